//! `GET /metrics`: the Prometheus exposition of vibesd, encoded by the
//! Prometheus project's client (`prometheus-client`, OpenMetrics text).
//!
//! - What the HTTP layer counts lives here ([`Metrics`], shared through
//!   [`AppState`]): requests by route template, method and status, their
//!   durations, open WebSocket clients by route, firehose clients closed
//!   for being slow.
//! - Everything else is read at scrape time from the Supervisor's shared
//!   snapshot (groups, log, LogWriter, iggy-server) and from `/proc` (the
//!   process): a scrape sends no actor a message, so a stuck handler or a
//!   busy writer never holds it up.
//!
//! Names start with `vibesd_`, carry their base unit, and take only
//! bounded labels: a group name, a route template, a method, a status.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use vibes_actors::group::{GroupSnapshot, GroupState};
use vibes_actors::metrics::{Buckets, COUNT_BOUNDS, DURATION_BOUNDS_US, Histogram};
use vibes_actors::supervisor::SupervisorSnapshot;

use crate::state::AppState;

/// The route label of a request that matched no route: raw paths are
/// unbounded, so they are never a label.
const UNMATCHED: &str = "unmatched";

/// The WebSocket routes, as their clients are counted.
pub(crate) const WS_CLIENT_ROUTE: &str = "/ws";
pub(crate) const WS_FIREHOSE_ROUTE: &str = "/ws/firehose";
pub(crate) const WS_NOTIFICATIONS_ROUTE: &str = "/ws/notifications";
pub(crate) const WS_PERMISSIONS_ROUTE: &str = "/ws/permissions";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WsLabels {
    route: &'static str,
}

/// One route's duration histograms, by method.
type ByMethod = Vec<(&'static str, Histogram)>;

/// What the HTTP layer counts; one per daemon, shared by every request.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    /// Per route template, a histogram per method. The key is the one copy
    /// of the template that every label of the route shares, so counting a
    /// request allocates nothing.
    durations: RwLock<HashMap<Arc<str>, ByMethod>>,
    websocket_clients: Family<WsLabels, Gauge>,
    firehose_slow_closed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            requests: Family::default(),
            durations: RwLock::default(),
            websocket_clients: Family::default(),
            firehose_slow_closed: Counter::default(),
        };
        // Every route shows from the first scrape, at 0.
        for route in [
            WS_CLIENT_ROUTE,
            WS_FIREHOSE_ROUTE,
            WS_NOTIFICATIONS_ROUTE,
            WS_PERMISSIONS_ROUTE,
        ] {
            let _ = metrics.websocket_clients.get_or_create(&WsLabels { route });
        }
        metrics
    }
}

impl Metrics {
    fn record(&self, template: &str, method: &'static str, status: u16, took: Duration) {
        let known = read(&self.durations)
            .get_key_value(template)
            .and_then(|(route, methods)| {
                let (_, histogram) = methods.iter().find(|(m, _)| *m == method)?;
                histogram.record_duration(took);
                Some(route.clone())
            });
        let route = known.unwrap_or_else(|| {
            // The first request of this route and method.
            let mut durations = write(&self.durations);
            let route = durations
                .get_key_value(template)
                .map_or_else(|| Arc::from(template), |(route, _)| route.clone());
            let methods = durations.entry(route.clone()).or_default();
            match methods.iter().find(|(m, _)| *m == method) {
                Some((_, histogram)) => histogram.record_duration(took),
                None => {
                    let histogram = Histogram::durations();
                    histogram.record_duration(took);
                    methods.push((method, histogram));
                }
            }
            route
        });
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// Counts an open WebSocket client of `route` until the guard drops.
    pub(crate) fn websocket_client(&self, route: &'static str) -> ClientGuard {
        let gauge = self
            .websocket_clients
            .get_or_create(&WsLabels { route })
            .clone();
        gauge.inc();
        ClientGuard(gauge)
    }

    /// A firehose client was closed for falling too far behind.
    pub(crate) fn firehose_client_too_slow(&self) {
        self.firehose_slow_closed.inc();
    }
}

/// One open WebSocket client, counted while it lives.
#[derive(Debug)]
pub(crate) struct ClientGuard(Gauge);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method as a label: the ones the API knows, else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One request being counted, by its route template (the matched path,
/// e.g. `/api/groups/{name}/seek`), method and, once answered, status.
pub(crate) struct Tracked {
    route: Option<MatchedPath>,
    method: &'static str,
    started: Instant,
}

impl Tracked {
    pub(crate) fn start(request: &Request) -> Self {
        Self {
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: method_label(request.method()),
            started: Instant::now(),
        }
    }

    pub(crate) fn finish(self, metrics: &Metrics, response: &Response) {
        let route = self.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        metrics.record(
            route,
            self.method,
            response.status().as_u16(),
            self.started.elapsed(),
        );
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// `GET /metrics`: OpenMetrics text to a scraper that asks for it (as
/// Prometheus does), else the Prometheus text format 0.0.4 (what `curl`
/// and `promtool check metrics` read).
pub(crate) async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    let snapshot = state.supervisor.snapshot().await;
    let scrape = Scrape {
        snapshot,
        process: ProcessStats::read(),
        http: state.metrics.clone(),
    };
    let mut registry = Registry::with_prefix("vibesd");
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    let (encoded, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut text, &registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    if let Err(err) = encoded {
        return crate::error::ApiError::internal("encode /metrics", &err).into_response();
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        text,
    )
        .into_response()
}

/// One scrape's figures.
#[derive(Debug)]
struct Scrape {
    snapshot: SupervisorSnapshot,
    process: ProcessStats,
    http: std::sync::Arc<Metrics>,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.encode_build(&mut encoder)?;
        self.encode_process(&mut encoder)?;
        self.encode_log(&mut encoder)?;
        self.encode_writer(&mut encoder)?;
        self.encode_groups(&mut encoder)?;
        self.encode_iggy(&mut encoder)?;
        self.encode_http(&mut encoder)
    }
}

/// A metric without labels.
fn single<'a>(
    encoder: &'a mut DescriptorEncoder<'_>,
    name: &'a str,
    help: &str,
    unit: Option<&'a Unit>,
    kind: MetricType,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, unit, kind)
}

/// A histogram's `buckets` over `bounds`, in seconds from microseconds
/// when `micros`.
fn encode_histogram(
    metric: &mut prometheus_client::encoding::MetricEncoder<'_>,
    buckets: &Buckets,
    bounds: &[u64],
    micros: bool,
) -> Result<(), std::fmt::Error> {
    let scale = if micros { 1e6 } else { 1.0 };
    let pairs: Vec<(f64, u64)> = bounds
        .iter()
        .map(|bound| *bound as f64 / scale)
        .chain(std::iter::once(f64::INFINITY))
        .zip(buckets.counts.iter().copied())
        .collect();
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        buckets.sum / scale,
        buckets.count,
        &pairs,
        None,
    )
}

impl Scrape {
    fn encode_build(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        single(
            encoder,
            "build",
            "The version of vibesd",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
    }

    fn encode_process(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let process = &self.process;
        single(
            encoder,
            "process_resident_memory",
            "Resident memory of the vibesd process",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?
        .encode_gauge(&process.resident_bytes)?;
        single(
            encoder,
            "process_open_fds",
            "File descriptors the vibesd process holds open",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&process.open_fds)?;
        single(
            encoder,
            "process_max_fds",
            "The vibesd process's limit on open file descriptors",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&process.max_fds)?;
        single(
            encoder,
            "process_cpu",
            "CPU time the vibesd process used, user and system",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?
        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
            &process.cpu_seconds,
            None,
        )?;
        single(
            encoder,
            "process_start_time",
            "When the vibesd process started, in seconds since the Unix epoch",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?
        .encode_gauge(&process.start_time_seconds)
    }

    fn encode_log(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = &self.snapshot;
        single(
            encoder,
            "log_high_water_mark",
            "The next offset the log assigns (events in the log)",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&snapshot.high_water_mark)?;
        single(
            encoder,
            "log_backend",
            "The backend the log runs on",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("backend", snapshot.backend.as_str())])
    }

    fn encode_writer(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let writer = &self.snapshot.writer;
        single(
            encoder,
            "writer_up",
            "1 while the LogWriter takes appends",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&u32::from(writer.open))?;
        single(
            encoder,
            "writer_queued_events",
            "Events admitted by the LogWriter and not yet answered",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&writer.queued_events)?;
        single(
            encoder,
            "writer_queue_capacity_events",
            "The most events the LogWriter queues before it answers busy",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&writer.max_queued_events)?;
        let counters: [(&str, &str, u64); 5] = [
            (
                "writer_commits",
                "Group commits the LogWriter wrote (one durable write each)",
                writer.group_commits,
            ),
            (
                "writer_events_written",
                "Events the LogWriter acknowledged",
                writer.events_written,
            ),
            (
                "writer_busy_rejections",
                "Appends refused as busy (HTTP 503 with Retry-After)",
                writer.busy_rejections,
            ),
            (
                "writer_failed_writes",
                "Group commits the log failed or refused",
                writer.failed_writes,
            ),
            (
                "writer_restarts",
                "Restarts of the LogWriter after it failed",
                writer.restarts,
            ),
        ];
        for (name, help, value) in counters {
            single(encoder, name, help, None, MetricType::Counter)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None)?;
        }
        let mut metric = single(
            encoder,
            "writer_append_duration",
            "From an append's request to its durable reply",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        encode_histogram(
            &mut metric,
            &writer.append_durations,
            DURATION_BOUNDS_US,
            true,
        )?;
        let mut metric = single(
            encoder,
            "writer_events_per_commit",
            "Events in each group commit",
            None,
            MetricType::Histogram,
        )?;
        encode_histogram(&mut metric, &writer.commit_sizes, COUNT_BOUNDS, false)
    }

    fn encode_groups(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let groups = &self.snapshot.groups;
        let gauges: [GroupFigure<i64>; 4] = [
            (
                "group_committed_offset",
                "The last offset the group committed (-1: none yet)",
                |g| g.committed.map_or(-1, offset_gauge),
            ),
            ("group_position", "The next offset the group reads", |g| {
                offset_gauge(g.position)
            }),
            (
                "group_lag_events",
                "Events in the log the group has not committed",
                |g| offset_gauge(g.lag_events),
            ),
            (
                "group_dead_letters_open",
                "The group's dead letters not yet replayed or skipped",
                |g| i64::try_from(g.open_dead_letters).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, value) in &gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for group in groups {
                metric
                    .encode_family(&[("group", group.name.as_str())])?
                    .encode_gauge(&value(group))?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "group_lag",
            "Age of the oldest event the group has not committed",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for group in groups {
            metric
                .encode_family(&[("group", group.name.as_str())])?
                .encode_gauge(&group.lag_seconds)?;
        }
        let counters: [GroupFigure<u64>; 4] = [
            (
                "group_events_handled",
                "Events the group's handler took",
                |g| g.events_handled,
            ),
            (
                "group_handler_errors",
                "Batches the group's handler failed",
                |g| g.handler_errors,
            ),
            (
                "group_restarts",
                "Restarts of the group's actor (after failures, and by operators)",
                |g| g.restarts,
            ),
            (
                "group_dead_letters",
                "Events the group dead-lettered since vibesd started",
                |g| g.dead_letters,
            ),
        ];
        for (name, help, value) in &counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for group in groups {
                metric
                    .encode_family(&[("group", group.name.as_str())])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                    &value(group),
                    None,
                )?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "group_state",
            "The group's state: 1 for the current one",
            None,
            MetricType::Gauge,
        )?;
        for group in groups {
            for state in GroupState::ALL {
                metric
                    .encode_family(&[("group", group.name.as_str()), ("state", state.as_str())])?
                    .encode_gauge(&u32::from(group.state == state))?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "group_handler_duration",
            "Time the group's handler took per batch",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for group in groups {
            let labels = [("group", group.name.as_str())];
            let mut family = metric.encode_family(&labels)?;
            encode_histogram(
                &mut family,
                &group.handler_durations,
                DURATION_BOUNDS_US,
                true,
            )?;
        }
        Ok(())
    }

    fn encode_iggy(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(server) = &self.snapshot.iggy_server else {
            return Ok(());
        };
        single(
            encoder,
            "iggy_server_up",
            "1 while the iggy-server vibesd manages runs",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&u32::from(server.up))?;
        single(
            encoder,
            "iggy_server_restarts",
            "Restarts of the managed iggy-server after it exited",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
            &server.restarts,
            None,
        )?;
        let pid = server.pid.map(|pid| pid.to_string()).unwrap_or_default();
        single(
            encoder,
            "iggy_server",
            "The managed iggy-server: its pid (empty while down) and address",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("pid", pid.as_str()), ("address", server.address.as_str())])
    }

    fn encode_http(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let http = &self.http;
        http.requests.encode(encoder.encode_descriptor(
            "http_requests",
            "HTTP requests by route template, method and status",
            None,
            MetricType::Counter,
        )?)?;
        {
            let mut metric = encoder.encode_descriptor(
                "http_request_duration",
                "Time to answer an HTTP request, by route template and method",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            let durations = read(&http.durations);
            let mut durations: Vec<_> = durations
                .iter()
                .flat_map(|(route, methods)| {
                    methods.iter().map(|(method, histogram)| {
                        let labels = RouteLabels {
                            route: route.clone(),
                            method,
                        };
                        (labels, histogram)
                    })
                })
                .collect();
            durations.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (labels, histogram) in durations {
                let mut family = metric.encode_family(&labels)?;
                encode_histogram(
                    &mut family,
                    &histogram.buckets(DURATION_BOUNDS_US),
                    DURATION_BOUNDS_US,
                    true,
                )?;
            }
        }
        http.websocket_clients.encode(encoder.encode_descriptor(
            "websocket_clients",
            "Open WebSocket clients by route",
            None,
            MetricType::Gauge,
        )?)?;
        http.firehose_slow_closed.encode(encoder.encode_descriptor(
            "firehose_slow_clients_closed",
            "Firehose clients closed for falling too far behind (code 1013)",
            None,
            MetricType::Counter,
        )?)
    }
}

/// An offset or a count of events as a gauge's value.
fn offset_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A per-group figure: its name, its help, and how to read it from a
/// group's snapshot.
type GroupFigure<T> = (&'static str, &'static str, fn(&GroupSnapshot) -> T);

/// The process's own figures, from `/proc/self` (zeros where it cannot be
/// read).
#[derive(Debug, Default)]
struct ProcessStats {
    resident_bytes: u64,
    open_fds: u64,
    max_fds: u64,
    cpu_seconds: f64,
    start_time_seconds: f64,
}

impl ProcessStats {
    fn read() -> Self {
        let Ok(process) = procfs::process::Process::myself() else {
            return Self::default();
        };
        let mut stats = Self::default();
        let ticks = procfs::ticks_per_second() as f64;
        if let Ok(stat) = process.stat() {
            stats.resident_bytes = stat.rss * procfs::page_size();
            stats.cpu_seconds = (stat.utime + stat.stime) as f64 / ticks;
            if let Ok(boot) = procfs::boot_time_secs() {
                stats.start_time_seconds = boot as f64 + stat.starttime as f64 / ticks;
            }
        }
        if let Ok(fds) = process.fd_count() {
            stats.open_fds = fds as u64;
        }
        if let Ok(limits) = process.limits() {
            stats.max_fds = match limits.max_open_files.soft_limit {
                procfs::process::LimitValue::Value(limit) => limit,
                procfs::process::LimitValue::Unlimited => u64::MAX,
            };
        }
        stats
    }
}
