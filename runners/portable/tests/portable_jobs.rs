//! Jobs on Beam Python's local job service through the portable runner: a word count, a
//! failing DoFn's error naming its transform, bad endpoints and missing options as clear
//! errors within their timeouts, cancel, a job service that dies mid-job. (The validates-runner suite's portable column
//! checks the semantics case by case.)

mod common;

#[path = "../../../sdk/tests/common/http.rs"]
mod http;

use std::time::{Duration, Instant};

use beamline::testing::assert_that;
use beamline::{
    Count, Create, DoFn, JobState, ParDo, Pipeline, PipelineOptions, ProcessContext, UserError,
};

fn words(p: &Pipeline) -> beamline::PCollection<String> {
    p.apply(
        "Lines",
        Create::of(vec![
            "the quick brown fox".to_string(),
            "the lazy dog".to_string(),
            "the end".to_string(),
        ]),
    )
    .flat_map("Split", |l: String| {
        l.split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    })
}

#[test]
fn word_count_runs_on_beams_job_service() {
    let p = Pipeline::new(common::portable());
    let counts = words(&p)
        .apply("Count", Count::per_element())
        .map("Format", |(w, n): (String, i64)| format!("{w}:{n}"));
    assert_that(&counts).contains_in_any_order(
        [
            "the:3", "quick:1", "brown:1", "fox:1", "lazy:1", "dog:1", "end:1",
        ]
        .map(String::from)
        .to_vec(),
    );
    p.run().expect("runs on the job service");
}

#[test]
fn the_job_ui_shows_the_stages_the_engine_ran_in_this_harness() {
    let p = Pipeline::new(
        common::portable()
            .set("ui", "127.0.0.1:0")
            .set("quiet", true)
            .set("job_name", "portable-words"),
    );
    words(&p)
        .apply("Count", Count::per_element())
        .map("Format", |(w, n): (String, i64)| format!("{w}:{n}"));
    let job = p.run().expect("runs on the job service");
    let url = job.ui_url().expect("a UI").to_string();
    let (status, body) = http::call(&url, "GET", "/api/jobs").expect("the UI answers");
    assert_eq!(status, 200);
    let jobs: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let view = &jobs["jobs"][0];
    assert_eq!(view["state"], "DONE", "{view}");
    assert_eq!(view["runner_stages"], true, "{view}");
    let stages = view["stages"].as_array().expect("stages");
    // The stage splitting lines wrote the 7 distinct words' partial counts (pre-combined)
    // to the engine's grouping; the stage after it merged them.
    let split = stages
        .iter()
        .find(|s| {
            s["transforms"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "Split")
        })
        .unwrap_or_else(|| panic!("no stage runs Split: {view}"));
    assert_eq!(split["elements_out"], 7, "{view}");
    let after = stages
        .iter()
        .find(|s| s["inputs"].as_array().unwrap().contains(&split["id"]))
        .unwrap_or_else(|| panic!("no stage reads Split's: {view}"));
    assert_eq!(after["kind"], "grouping", "{view}");
    assert_eq!(after["elements_in"], 7, "{view}");
    assert!(
        stages.iter().any(|s| s["kind"] == "source"),
        "the first stage reads only what the engine made (Impulse): {view}"
    );
}

#[derive(Clone)]
struct FailsOnSeven;

impl DoFn for FailsOnSeven {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        if x == 7 {
            return Err("seven is not allowed".into());
        }
        ctx.output(x);
        Ok(())
    }
}

#[test]
fn a_failing_dofn_fails_the_job_with_its_transform_and_message() {
    let p = Pipeline::new(common::portable());
    p.apply("Numbers", Create::of(0i64..20))
        .apply("Picky", ParDo::of(FailsOnSeven));
    let err = p.run().expect_err("the job fails").to_string();
    assert!(err.contains("'Picky'"), "{err}");
    assert!(err.contains("seven is not allowed"), "{err}");
}

#[test]
fn an_unreachable_job_service_is_an_error_within_the_connect_timeout() {
    // A port nothing listens on: bind one and drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("runner", "portable")
            .set("job_endpoint", format!("127.0.0.1:{port}"))
            .set("connect_timeout", "2s"),
    );
    p.apply("Numbers", Create::of(0i64..3));
    let start = Instant::now();
    let err = p.run().expect_err("no service").to_string();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(err.contains("Beam job service"), "{err}");
    assert!(err.contains(&port.to_string()), "{err}");
}

#[test]
fn the_portable_runner_without_a_job_endpoint_says_what_is_missing() {
    let p = Pipeline::new(PipelineOptions::default().set("runner", "portable"));
    p.apply("Numbers", Create::of(0i64..3));
    let err = p.run().expect_err("no endpoint").to_string();
    assert!(err.contains("--job-endpoint"), "{err}");
}

#[derive(Clone)]
struct Slow;

impl DoFn for Slow {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        std::thread::sleep(Duration::from_millis(20));
        ctx.output(x);
        Ok(())
    }
}

#[test]
fn cancel_stops_a_running_job() {
    let p = Pipeline::new(common::portable());
    // 2000 elements at 20 ms: 40 s of work.
    p.apply("Numbers", Create::of(0i64..2000))
        .apply("Slow", ParDo::of(Slow));
    let job = p.start().expect("starts");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(job.state(), JobState::Running);
    let start = Instant::now();
    job.cancel();
    let state = job
        .wait_until_finish(Some(Duration::from_secs(30)))
        .expect("ends");
    assert_eq!(state, JobState::Cancelled);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_job_service_that_dies_mid_job_fails_the_job_promptly() {
    use beamline_runner_portable::local_service::LocalJobService;
    let service =
        LocalJobService::start(&common::beam_python(), Duration::from_secs(120)).expect("starts");
    let p = Pipeline::new(
        PipelineOptions::default()
            .set("runner", "portable")
            .set("job_endpoint", service.endpoint()),
    );
    p.apply("Numbers", Create::of(0i64..2000))
        .apply("Slow", ParDo::of(Slow));
    let job = p.start().expect("starts");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(job.state(), JobState::Running);
    let start = Instant::now();
    drop(service);
    let err = job
        .wait_until_finish(Some(Duration::from_secs(60)))
        .expect_err("the job fails");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(job.state(), JobState::Failed);
    let text = err.to_string();
    assert!(
        text.contains("Beam engine") || text.contains("job service"),
        "unclear error: {text}"
    );
    eprintln!("error when the service died: {text}");
}

#[derive(Clone)]
struct Counts;

impl DoFn for Counts {
    type In = i64;
    type Out = i64;
    fn process(&mut self, x: i64, ctx: &mut ProcessContext<'_, '_, i64>) -> Result<(), UserError> {
        ctx.inc_counter("portable-metrics-test", "seen", 1);
        ctx.update_distribution("portable-metrics-test", "values", x);
        ctx.output(x);
        Ok(())
    }
}

/// The user metrics Beam's job service reports for its job whose metrics have namespace
/// `namespace`: (urn, name, payload) of each.
fn service_metrics(namespace: &str) -> Vec<(String, String, Vec<u8>)> {
    use beamline_proto::job_management as jm;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = jm::job_service_client::JobServiceClient::connect(format!(
            "http://{}",
            common::endpoint()
        ))
        .await
        .unwrap();
        let jobs = client
            .get_jobs(jm::GetJobsRequest {})
            .await
            .unwrap()
            .into_inner()
            .job_info;
        let mut found = Vec::new();
        for job in jobs {
            let metrics = client
                .get_job_metrics(jm::GetJobMetricsRequest { job_id: job.job_id })
                .await
                .unwrap()
                .into_inner()
                .metrics
                .unwrap_or_default();
            for m in metrics.committed {
                if m.labels.get("NAMESPACE").map(String::as_str) == Some(namespace) {
                    let name = m.labels.get("NAME").cloned().unwrap_or_default();
                    found.push((m.urn, name, m.payload));
                }
            }
        }
        found
    })
}

fn varints(mut b: &[u8]) -> Vec<i64> {
    let mut out = Vec::new();
    while !b.is_empty() {
        out.push(beamline::engine::coder::read_varint(&mut b).unwrap() as i64);
    }
    out
}

#[test]
fn user_metrics_reach_the_job_service_and_the_handle() {
    let p = Pipeline::new(common::portable());
    p.apply("Numbers", Create::of(1i64..=10))
        .apply("Counted", ParDo::of(Counts));
    let result = p.run().expect("runs");
    let handle = result.metrics();
    assert_eq!(handle.counter("portable-metrics-test", "seen"), Some(10));
    let reported = service_metrics("portable-metrics-test");
    let counter = reported
        .iter()
        .find(|(urn, name, _)| urn == "beam:metric:user:sum_int64:v1" && name == "seen")
        .unwrap_or_else(|| panic!("no counter in {reported:?}"));
    assert_eq!(varints(&counter.2), vec![10]);
    let dist = reported
        .iter()
        .find(|(urn, name, _)| urn == "beam:metric:user:distribution_int64:v1" && name == "values")
        .unwrap_or_else(|| panic!("no distribution in {reported:?}"));
    // count, sum, min, max
    assert_eq!(varints(&dist.2), vec![10, 55, 1, 10]);
}
