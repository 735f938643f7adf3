//! ReadFromParquet and WriteToParquet: round trips, row groups, projection, codecs, errors.

use beamline::arrow::arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use beamline::arrow::arrow_schema::{DataType, Field, Schema};
use beamline::arrow::ArrowBatch;
use beamline::io::parquet::{ReadFromParquet, WriteToParquet};
use beamline::testing::capture;
use beamline::{Create, Pipeline, PipelineOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ]))
}

fn batch(from: i64, n: i64) -> RecordBatch {
    let ids: Vec<i64> = (from..from + n).collect();
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|i| (i % 5 != 0).then(|| format!("user-{i}")))
        .collect();
    let scores: Vec<Option<f64>> = ids
        .iter()
        .map(|i| (i % 7 != 0).then_some(*i as f64 / 4.0))
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(Float64Array::from(scores)),
        ],
    )
    .unwrap()
}

type Row = (i64, Option<String>, Option<u64>);

/// Rows of batches with columns (id, name, score), sorted.
fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let id = b.column_by_name("id").unwrap();
        let id = id.as_any().downcast_ref::<Int64Array>().unwrap();
        let name = b.column_by_name("name").unwrap();
        let name = name.as_any().downcast_ref::<StringArray>().unwrap();
        let score = b.column_by_name("score").unwrap();
        let score = score.as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push((
                id.value(i),
                name.is_valid(i).then(|| name.value(i).to_string()),
                score.is_valid(i).then(|| score.value(i).to_bits()),
            ));
        }
    }
    out.sort();
    out
}

fn read_file(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn files_with_prefix(dir: &Path, stem: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(stem))
        .collect();
    names.sort();
    names
}

#[test]
fn write_then_read_round_trips_with_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<ArrowBatch> = (0..6).map(|i| ArrowBatch(batch(i * 100, 100))).collect();
    let expected = rows(&input.iter().map(|b| b.0.clone()).collect::<Vec<_>>());
    for codec in beamline::io::parquet::CODECS {
        let prefix = dir.path().join(format!("out-{codec}"));
        let p = Pipeline::new(PipelineOptions::default());
        let names = p.apply("Batches", Create::of(input.clone())).apply(
            "Write",
            WriteToParquet::new(prefix.to_string_lossy())
                .with_suffix(".parquet")
                .with_num_shards(2)
                .with_codec(codec)
                .unwrap(),
        );
        let names = capture(&names);
        p.run().unwrap();
        assert_eq!(names.sorted().len(), 2);
        let files = files_with_prefix(dir.path(), &format!("out-{codec}"));
        assert_eq!(
            files,
            vec![
                format!("out-{codec}-00000-of-00002.parquet"),
                format!("out-{codec}-00001-of-00002.parquet")
            ]
        );
        // Read back independently of Beamline...
        let direct: Vec<RecordBatch> = files
            .iter()
            .flat_map(|f| read_file(&dir.path().join(f)))
            .collect();
        assert_eq!(rows(&direct), expected, "codec {codec}");
        // ...and with ReadFromParquet.
        let p = Pipeline::new(PipelineOptions::default());
        let pattern = format!("{}-*.parquet", prefix.display());
        let got = capture(&p.apply("Read", ReadFromParquet::new(pattern)));
        p.run().unwrap();
        let got: Vec<RecordBatch> = got.items().into_iter().map(|b| b.0).collect();
        assert_eq!(rows(&got), expected, "codec {codec}");
    }
}

#[test]
fn reads_row_groups_in_parallel_with_projection_in_requested_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("groups.parquet");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(250))
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema(), Some(props)).unwrap();
    let all = batch(0, 1000);
    w.write(&all).unwrap();
    let meta = w.close().unwrap();
    assert_eq!(meta.num_row_groups(), 4);

    let p = Pipeline::new(PipelineOptions::from_args(["--threads=2"]).unwrap());
    let read = p.apply(
        "Read",
        ReadFromParquet::new(path.to_string_lossy())
            .with_columns(["score", "id"])
            .with_batch_size(100),
    );
    let got = capture(&read);
    p.run().unwrap();
    let got: Vec<RecordBatch> = got.items().into_iter().map(|b| b.0).collect();
    // 4 row groups of 250 rows in batches of at most 100 rows: 3 batches each.
    assert_eq!(got.len(), 12);
    for b in &got {
        assert!(b.num_rows() <= 100);
        let names: Vec<&str> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["score", "id"]);
    }
    let mut ids: Vec<i64> = got
        .iter()
        .flat_map(|b| {
            let a = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().to_vec()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
}

#[test]
fn empty_input_writes_valid_empty_shards_when_the_schema_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("empty");
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Batches", Create::of(Vec::<ArrowBatch>::new()))
        .apply(
            "Write",
            WriteToParquet::new(prefix.to_string_lossy())
                .with_num_shards(1)
                .with_schema(schema()),
        );
    p.run().unwrap();
    let f = dir.path().join("empty-00000-of-00001");
    let file = std::fs::File::open(&f).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(b.schema().fields(), schema().fields());
    assert_eq!(b.metadata().file_metadata().num_rows(), 0);

    // More shards than batches, no schema: empty shards take another shard's schema.
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Batches", Create::of(vec![ArrowBatch(batch(0, 10))]))
        .apply(
            "Write",
            WriteToParquet::new(dir.path().join("sparse").to_string_lossy()).with_num_shards(4),
        );
    p.run().unwrap();
    let files = files_with_prefix(dir.path(), "sparse");
    assert_eq!(files.len(), 4);
    let all: Vec<RecordBatch> = files
        .iter()
        .flat_map(|f| read_file(&dir.path().join(f)))
        .collect();
    assert_eq!(rows(&all), rows(&[batch(0, 10)]));

    // Without a schema there is nothing to write an empty file with: a clear error.
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Batches", Create::of(Vec::<ArrowBatch>::new()))
        .apply(
            "Write",
            WriteToParquet::new(dir.path().join("noschema").to_string_lossy()).with_num_shards(1),
        );
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("give WriteToParquet a schema"), "{err}");
}

#[test]
fn bad_input_is_reported_with_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    // No file matches.
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Read", ReadFromParquet::new("/no/such/dir/*.parquet"));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("no files match '/no/such/dir/*.parquet'"),
        "{err}"
    );

    // Not a Parquet file.
    let bogus = dir.path().join("bogus.parquet");
    std::fs::write(&bogus, b"this is not parquet at all").unwrap();
    let p = Pipeline::new(PipelineOptions::default());
    p.apply("Read", ReadFromParquet::new(bogus.to_string_lossy()));
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("bogus.parquet is not a readable Parquet file"),
        "{err}"
    );

    // An unknown column names the file and the columns it has.
    let good = dir.path().join("good.parquet");
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&good).unwrap(), schema(), None).unwrap();
    w.write(&batch(0, 10)).unwrap();
    w.close().unwrap();
    let p = Pipeline::new(PipelineOptions::default());
    p.apply(
        "Read",
        ReadFromParquet::new(good.to_string_lossy()).with_columns(["id", "nope"]),
    );
    let err = p.run().unwrap_err().to_string();
    assert!(
        err.contains("has no column 'nope' (columns: id, name, score)"),
        "{err}"
    );

    // Batches with another schema than the file's.
    let other = RecordBatch::try_from_iter([(
        "x",
        Arc::new(StringArray::from(vec!["a"])) as Arc<dyn Array>,
    )])
    .unwrap();
    let p = Pipeline::new(PipelineOptions::default());
    p.apply(
        "Batches",
        Create::of(vec![ArrowBatch(batch(0, 3)), ArrowBatch(other)]),
    )
    .apply(
        "Write",
        WriteToParquet::new(dir.path().join("mixed").to_string_lossy())
            .with_num_shards(1)
            .with_schema(schema()),
    );
    let err = p.run().unwrap_err().to_string();
    assert!(err.contains("differs from the file's schema"), "{err}");
    assert!(files_with_prefix(dir.path(), "mixed").is_empty());

    // An unknown codec is a construction error.
    let err = WriteToParquet::new("x")
        .with_codec("brotli9")
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("unsupported Parquet codec 'brotli9'"),
        "{err}"
    );
}
