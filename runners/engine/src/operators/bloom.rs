//! A Bloom filter of byte strings that grows with what it holds: a spill store's filter
//! of the states it ever held answers most lookups of new keys without reading the file.

/// A Bloom filter that grows: filters of doubling capacity, each at about 1% false
/// positives when full (10 bits and 7 probes per entry); a lookup asks each.
#[derive(Default)]
pub(crate) struct Bloom {
    /// Bits, entries added, capacity.
    filters: Vec<(Vec<u64>, usize, usize)>,
}

/// Entries of the first filter.
const BLOOM_FIRST: usize = 1 << 16;
const BLOOM_PROBES: u64 = 7;

impl Bloom {
    fn hashes(row: &[u8]) -> (u64, u64) {
        use std::hash::BuildHasher;
        // Fx mixes short keys poorly: finish with a SplitMix64 round.
        let mut x = rustc_hash::FxBuildHasher.hash_one(row);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (x, (x >> 32) | 1)
    }

    pub(crate) fn insert(&mut self, row: &[u8]) {
        let full = self.filters.last().is_none_or(|f| f.1 >= f.2);
        if full {
            let capacity = self.filters.last().map_or(BLOOM_FIRST, |f| f.2 * 2);
            self.filters
                .push((vec![0; (capacity * 10).div_ceil(64)], 0, capacity));
        }
        let (h1, h2) = Self::hashes(row);
        let f = self.filters.last_mut().expect("one filter");
        let bits = f.0.len() as u64 * 64;
        for i in 0..BLOOM_PROBES {
            let b = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            f.0[(b / 64) as usize] |= 1 << (b % 64);
        }
        f.1 += 1;
    }

    pub(crate) fn may_contain(&self, row: &[u8]) -> bool {
        let (h1, h2) = Self::hashes(row);
        self.filters.iter().any(|f| {
            let bits = f.0.len() as u64 * 64;
            (0..BLOOM_PROBES).all(|i| {
                let b = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
                f.0[(b / 64) as usize] & (1 << (b % 64)) != 0
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bloom_filter_finds_what_was_added_and_few_others() {
        let mut b = Bloom::default();
        let rows: Vec<Vec<u8>> = (0..300_000u64).map(|i| i.to_le_bytes().to_vec()).collect();
        for r in &rows {
            b.insert(r);
        }
        assert!(b.filters.len() > 2, "it grew");
        assert!(rows.iter().all(|r| b.may_contain(r)));
        let false_positives = (1_000_000..1_100_000u64)
            .filter(|i| b.may_contain(&i.to_le_bytes()))
            .count();
        assert!(false_positives < 5_000, "{false_positives} of 100000");
    }
}
