//! Bad input: each expected error names what was wrong.

use crate::{Case, Category as C, Expect};
use beamline::testing::assert_that;
use beamline::{
    Create, DoFn, ParDo, Partition, ProcessContext, ReadFromText, StateSpec, UserError, WindowInto,
};

#[derive(Clone)]
struct Fail {
    panic: bool,
}

impl DoFn for Fail {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        if x == 3 {
            if self.panic {
                panic!("boom on {x}");
            }
            return Err(format!("cannot take {x}").into());
        }
        ctx.output(x);
        Ok(())
    }
}

#[derive(Clone)]
struct UsesUndeclared;

impl DoFn for UsesUndeclared {
    type In = (String, i64);
    type Out = i64;
    fn process(
        &mut self,
        (_, v): (String, i64),
        ctx: &mut ProcessContext<'_, '_, i64>,
    ) -> Result<(), UserError> {
        ctx.state()?.write("missing", v)?;
        Ok(())
    }
}

pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "dofn_error_fails_job",
            categories: &[C::BadInput, C::ParDo],
            expect: Expect::Failure("transform 'Fails' failed: cannot take 3"),
            build: |p| {
                p.apply("Nums", Create::of(1i64..=5))
                    .apply("Fails", ParDo::of(Fail { panic: false }));
            },
        },
        Case {
            name: "dofn_panic_fails_job",
            categories: &[C::BadInput, C::ParDo],
            expect: Expect::Failure("transform 'Panics' failed: panicked: boom on 3"),
            build: |p| {
                p.apply("Nums", Create::of(1i64..=5))
                    .apply("Panics", ParDo::of(Fail { panic: true }));
            },
        },
        Case {
            name: "missing_input_files",
            categories: &[C::BadInput, C::TextIO],
            expect: Expect::Failure("no files match '/nonexistent/beamline/*.txt'"),
            build: |p| {
                p.apply("Read", ReadFromText::new("/nonexistent/beamline/*.txt"));
            },
        },
        Case {
            name: "partition_index_out_of_range",
            categories: &[C::BadInput, C::Composites],
            expect: Expect::Failure("partition function returned 5, not in 0..2"),
            build: |p| {
                p.apply("Nums", Create::of(vec![1i64]))
                    .apply("Split", Partition::new(2, |_: &i64, _| 5));
            },
        },
        Case {
            name: "duplicate_transform_names",
            categories: &[C::BadInput],
            expect: Expect::Failure("two transforms are named 'Same'"),
            build: |p| {
                let n = p.apply("Nums", Create::of(vec![1i64]));
                n.map("Same", |x: i64| x);
                n.map("Same", |x: i64| x);
            },
        },
        Case {
            name: "undeclared_state",
            categories: &[C::BadInput, C::StatefulParDo],
            expect: Expect::Failure("state 'missing' is not declared"),
            build: |p| {
                p.apply("Kvs", Create::of(vec![("a".to_string(), 1i64)]))
                    .apply(
                        "S",
                        ParDo::of(UsesUndeclared).with_state(StateSpec::value::<i64>("other")),
                    );
            },
        },
        Case {
            name: "non_positive_window_size",
            categories: &[C::BadInput, C::Windowing],
            expect: Expect::Failure("must be positive"),
            build: |p| {
                p.apply("Nums", Create::of(vec![1i64]))
                    .apply("W", WindowInto::fixed(0));
            },
        },
        Case {
            name: "failed_assertion_shows_a_diff",
            categories: &[C::BadInput],
            expect: Expect::Failure("missing [4]; unexpected [3]"),
            build: |p| {
                let n = p.apply("Nums", Create::of(vec![1i64, 2, 3]));
                assert_that(&n).contains_in_any_order(vec![1, 2, 4]);
            },
        },
        Case {
            name: "invalid_utf8_text",
            categories: &[C::BadInput, C::TextIO],
            expect: Expect::Failure("is not valid UTF-8"),
            build: |p| {
                let path = std::env::temp_dir()
                    .join(format!("beamline-vr-bad-{}.txt", std::process::id()));
                std::fs::write(&path, b"\xff\xfe\n").expect("temp file");
                p.apply("Read", ReadFromText::new(path.to_string_lossy()));
            },
        },
        Case {
            name: "text_io_reads_gzip_and_plain",
            categories: &[C::TextIO],
            expect: Expect::Success,
            build: |p| {
                use std::io::Write;
                let dir =
                    std::env::temp_dir().join(format!("beamline-vr-text-{}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                std::fs::write(dir.join("a.txt"), "x\ny\n").expect("write");
                let gz = std::fs::File::create(dir.join("b.txt.gz")).expect("create");
                let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
                enc.write_all(b"z\n").expect("write");
                enc.finish().expect("finish");
                let lines = p.apply("Read", ReadFromText::new(format!("{}/*", dir.display())));
                assert_that(&lines).contains_in_any_order(vec![
                    "x".to_string(),
                    "y".to_string(),
                    "z".to_string(),
                ]);
            },
        },
    ]
}
