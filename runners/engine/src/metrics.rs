//! User metrics: counters, distributions and gauges, per transform, merged across workers.

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Orders gauge writes across threads, so "latest" is well defined without a clock.
static GAUGE_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A metric's identity: the transform that reported it, a namespace and a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    /// Unique name of the reporting transform.
    pub step: String,
    /// Namespace chosen by the user.
    pub namespace: String,
    /// Metric name.
    pub name: String,
}

/// Summary of the values reported to a distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistributionData {
    /// Number of values.
    pub count: i64,
    /// Sum of values.
    pub sum: i64,
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
}

impl DistributionData {
    fn single(v: i64) -> Self {
        DistributionData {
            count: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

    fn merge(&mut self, o: &DistributionData) {
        self.count += o.count;
        self.sum = self.sum.wrapping_add(o.sum);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// Mean of the values, if any were reported.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

/// The latest value set on a gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaugeData {
    /// The value.
    pub value: i64,
    /// Write order; the highest wins when merging.
    pub sequence: u64,
}

type Name = (String, String);

/// The metrics one transform instance reported; merged into [`MetricResults`] at the end.
#[derive(Clone, Debug, Default)]
pub struct MetricsContainer {
    counters: FxHashMap<Name, i64>,
    distributions: FxHashMap<Name, DistributionData>,
    gauges: FxHashMap<Name, GaugeData>,
}

impl MetricsContainer {
    /// Adds `delta` to a counter.
    pub fn inc_counter(&mut self, namespace: &str, name: &str, delta: i64) {
        match self
            .counters
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            Some(c) => *c += delta,
            None => {
                self.counters.insert((namespace.into(), name.into()), delta);
            }
        }
    }

    /// Reports one value to a distribution.
    pub fn update_distribution(&mut self, namespace: &str, name: &str, value: i64) {
        self.distributions
            .entry((namespace.into(), name.into()))
            .and_modify(|d| d.merge(&DistributionData::single(value)))
            .or_insert_with(|| DistributionData::single(value));
    }

    /// Sets a gauge.
    pub fn set_gauge(&mut self, namespace: &str, name: &str, value: i64) {
        let sequence = GAUGE_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        self.gauges.insert(
            (namespace.into(), name.into()),
            GaugeData { value, sequence },
        );
    }

    /// True if nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.distributions.is_empty() && self.gauges.is_empty()
    }
}

/// All metrics of a job, by transform and name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricResults {
    /// Counter values.
    pub counters: BTreeMap<MetricKey, i64>,
    /// Distribution summaries.
    pub distributions: BTreeMap<MetricKey, DistributionData>,
    /// Gauge values.
    pub gauges: BTreeMap<MetricKey, GaugeData>,
}

impl MetricResults {
    /// Folds results gathered elsewhere (another worker's) into these.
    pub fn merge(&mut self, other: MetricResults) {
        for (k, v) in other.counters {
            *self.counters.entry(k).or_insert(0) += v;
        }
        for (k, d) in other.distributions {
            self.distributions
                .entry(k)
                .and_modify(|x| x.merge(&d))
                .or_insert(d);
        }
        for (k, g) in other.gauges {
            self.gauges
                .entry(k)
                .and_modify(|x| {
                    if g.sequence > x.sequence {
                        *x = g
                    }
                })
                .or_insert(g);
        }
    }

    /// Folds one transform instance's container into the results.
    pub fn merge_container(&mut self, step: &str, c: &MetricsContainer) {
        let key = |(ns, n): &Name| MetricKey {
            step: step.to_string(),
            namespace: ns.clone(),
            name: n.clone(),
        };
        for (n, v) in &c.counters {
            *self.counters.entry(key(n)).or_insert(0) += v;
        }
        for (n, d) in &c.distributions {
            self.distributions
                .entry(key(n))
                .and_modify(|x| x.merge(d))
                .or_insert(*d);
        }
        for (n, g) in &c.gauges {
            self.gauges
                .entry(key(n))
                .and_modify(|x| {
                    if g.sequence > x.sequence {
                        *x = *g
                    }
                })
                .or_insert(*g);
        }
    }

    /// A counter summed over every transform that reported it.
    pub fn counter(&self, namespace: &str, name: &str) -> Option<i64> {
        let mut found = None;
        for (k, v) in &self.counters {
            if k.namespace == namespace && k.name == name {
                *found.get_or_insert(0) += v;
            }
        }
        found
    }

    /// A distribution merged over every transform that reported it.
    pub fn distribution(&self, namespace: &str, name: &str) -> Option<DistributionData> {
        let mut found: Option<DistributionData> = None;
        for (k, d) in &self.distributions {
            if k.namespace == namespace && k.name == name {
                match &mut found {
                    Some(f) => f.merge(d),
                    None => found = Some(*d),
                }
            }
        }
        found
    }

    /// The latest value of a gauge over every transform that set it.
    pub fn gauge(&self, namespace: &str, name: &str) -> Option<i64> {
        self.gauges
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.name == name)
            .max_by_key(|(_, g)| g.sequence)
            .map(|(_, g)| g.value)
    }
}

impl MetricResults {
    /// The results as one line of JSON (what another process sends back).
    ///
    /// # Examples
    ///
    /// ```
    /// use beamline_engine::metrics::{MetricResults, MetricsContainer};
    /// let mut c = MetricsContainer::default();
    /// c.inc_counter("ns", "seen", 3);
    /// let mut m = MetricResults::default();
    /// m.merge_container("Step", &c);
    /// assert_eq!(MetricResults::from_json(&m.to_json()).unwrap(), m);
    /// ```
    pub fn to_json(&self) -> String {
        use serde_json::json;
        let key = |k: &MetricKey| json!([k.step, k.namespace, k.name]);
        let counters: Vec<_> = self
            .counters
            .iter()
            .map(|(k, v)| json!([key(k), v]))
            .collect();
        let distributions: Vec<_> = self
            .distributions
            .iter()
            .map(|(k, d)| json!([key(k), d.count, d.sum, d.min, d.max]))
            .collect();
        let gauges: Vec<_> = self
            .gauges
            .iter()
            .map(|(k, g)| json!([key(k), g.value, g.sequence]))
            .collect();
        json!({"counters": counters, "distributions": distributions, "gauges": gauges}).to_string()
    }

    /// Reads what [`MetricResults::to_json`] wrote.
    ///
    /// # Errors
    /// A message saying what is malformed.
    pub fn from_json(text: &str) -> Result<MetricResults, String> {
        use serde_json::Value as J;
        let v: J = serde_json::from_str(text).map_err(|e| format!("metrics: {e}"))?;
        let bad = || "metrics: unexpected shape".to_string();
        let list = |name: &str| -> Result<Vec<J>, String> {
            Ok(v.get(name)
                .and_then(J::as_array)
                .cloned()
                .unwrap_or_default())
        };
        let key = |j: &J| -> Result<MetricKey, String> {
            let a = j.as_array().ok_or_else(bad)?;
            let s = |i: usize| {
                a.get(i)
                    .and_then(J::as_str)
                    .map(String::from)
                    .ok_or_else(bad)
            };
            Ok(MetricKey {
                step: s(0)?,
                namespace: s(1)?,
                name: s(2)?,
            })
        };
        let int = |j: Option<&J>| j.and_then(J::as_i64).ok_or_else(bad);
        let mut out = MetricResults::default();
        for e in list("counters")? {
            let a = e.as_array().ok_or_else(bad)?;
            out.counters
                .insert(key(a.first().ok_or_else(bad)?)?, int(a.get(1))?);
        }
        for e in list("distributions")? {
            let a = e.as_array().ok_or_else(bad)?;
            out.distributions.insert(
                key(a.first().ok_or_else(bad)?)?,
                DistributionData {
                    count: int(a.get(1))?,
                    sum: int(a.get(2))?,
                    min: int(a.get(3))?,
                    max: int(a.get(4))?,
                },
            );
        }
        for e in list("gauges")? {
            let a = e.as_array().ok_or_else(bad)?;
            out.gauges.insert(
                key(a.first().ok_or_else(bad)?)?,
                GaugeData {
                    value: int(a.get(1))?,
                    sequence: a.get(2).and_then(J::as_u64).ok_or_else(bad)?,
                },
            );
        }
        Ok(out)
    }
}
