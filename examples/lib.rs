//! Helpers shared by the examples (and their tests).

/// The words of a line: maximal runs of letters, digits and apostrophes (Beam's `[\w']+`).
pub fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\''))
        .filter(|w| !w.is_empty())
}

/// The clickstream pipeline, shared by the example, its tests and the benchmark.
pub mod clickstream {
    use beamline::io::generator::Generator;
    use beamline::{
        Count, DoFn, Element, PCollection, ParDo, ProcessContext, StateSpec, Timing, Trigger,
        UserError, Window, WindowInto,
    };

    /// Window length: one minute.
    pub const WINDOW_MS: i64 = 60_000;
    /// Late clicks are accepted up to ten minutes after the end of their window.
    pub const ALLOWED_LATENESS_MS: i64 = 600_000;

    /// The user name of a generator key.
    pub fn user_of(key: i64) -> String {
        format!("user{key:04}")
    }

    /// The click stream of the generator: out of order, with a few late clicks.
    pub fn generator(users: u64, count: Option<u64>, rate: u64, seed: u64) -> Generator {
        let g = Generator::new(users)
            .with_seed(seed)
            .with_rate(rate)
            .with_events_per_second(1_000)
            .with_out_of_orderness(5_000)
            .with_late_events(0.01, 120_000);
        match count {
            Some(n) => g.with_count(n),
            None => g,
        }
    }

    /// Parses a `user,timestamp_ms` CSV line.
    ///
    /// # Errors
    /// When the line is not two comma-separated fields with an integer timestamp.
    pub fn parse_csv(line: &str) -> Result<(String, i64), String> {
        let (user, ts) = line
            .split_once(',')
            .ok_or_else(|| format!("expected 'user,timestamp_ms', got '{line}'"))?;
        let ts = ts
            .trim()
            .parse()
            .map_err(|_| format!("bad timestamp in '{line}'"))?;
        Ok((user.trim().to_string(), ts))
    }

    /// Per-user click counts in one-minute windows: early firings every 2s of processing
    /// time, the on-time pane, then one late pane per late click (accumulating panes).
    /// Users are names or numeric ids.
    pub fn counts<U: Element>(clicks: &PCollection<U>) -> PCollection<(U, i64)> {
        clicks
            .map("KeyByUser", |u: U| (u, ()))
            .apply(
                "Minutes",
                WindowInto::fixed(WINDOW_MS)
                    .triggering(Trigger::after_watermark(
                        Some(Trigger::AfterProcessingTime(2_000)),
                        Some(Trigger::AfterCount(1)),
                    ))
                    .accumulating()
                    .with_allowed_lateness(ALLOWED_LATENESS_MS),
            )
            .apply("CountPerUser", Count::per_key())
    }

    /// Counts the panes it sees in the metric `clickstream/panes` (the counts of every
    /// process reach the job's result).
    #[derive(Clone)]
    pub struct CountPanes;

    impl DoFn for CountPanes {
        type In = (String, i64);
        type Out = ();
        fn process(
            &mut self,
            _: (String, i64),
            ctx: &mut ProcessContext<'_, '_, ()>,
        ) -> Result<(), UserError> {
            ctx.inc_counter("clickstream", "panes", 1);
            Ok(())
        }
    }

    /// One line per pane: `user,window_start,pane_index,timing,count`.
    #[derive(Clone)]
    pub struct DescribePane;

    impl DoFn for DescribePane {
        type In = (String, i64);
        type Out = String;
        fn process(
            &mut self,
            (user, n): (String, i64),
            ctx: &mut ProcessContext<'_, '_, String>,
        ) -> Result<(), UserError> {
            let start = match ctx.window() {
                Window::Interval { start, .. } => start,
                Window::Global => i64::MIN,
            };
            let pane = ctx.pane();
            ctx.output(format!(
                "{user},{start},{},{},{n}",
                pane.index,
                timing(pane.timing)
            ));
            Ok(())
        }
    }

    fn timing(t: Timing) -> &'static str {
        match t {
            Timing::Early => "EARLY",
            Timing::OnTime => "ON_TIME",
            Timing::Late => "LATE",
            Timing::Unknown => "UNKNOWN",
        }
    }

    /// Keeps the latest count of every user of a window (map state) and emits the ranking
    /// of the top users each time a pane arrives.
    #[derive(Clone)]
    pub struct Ranking {
        /// How many users to show.
        pub top: usize,
    }

    impl DoFn for Ranking {
        type In = (String, (String, i64));
        type Out = String;
        fn process(
            &mut self,
            (_, (user, n)): (String, (String, i64)),
            ctx: &mut ProcessContext<'_, '_, String>,
        ) -> Result<(), UserError> {
            let (window, pane) = (ctx.window(), ctx.pane());
            let mut st = ctx.state()?;
            st.map_put("latest", user.clone(), n)?;
            let mut all: Vec<(String, i64)> = st.map_entries("latest")?;
            all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let top: Vec<String> = all
                .iter()
                .take(self.top)
                .map(|(u, n)| format!("{u}={n}"))
                .collect();
            let label = match window {
                Window::Interval { start, end } => format!("[{start}, {end})"),
                Window::Global => "global".into(),
            };
            ctx.output(format!(
                "window {label} {} pane of {user}: top {}",
                timing(pane.timing),
                top.join(" ")
            ));
            Ok(())
        }
    }

    /// The ranking of the top users per window, updated as panes fire.
    pub fn ranking(counts: &PCollection<(String, i64)>, top: usize) -> PCollection<String> {
        counts
            .map("OneKey", |kv: (String, i64)| ("all".to_string(), kv))
            .apply(
                "Rank",
                ParDo::of(Ranking { top }).with_state(StateSpec::map::<String, i64>("latest")),
            )
    }
}
