//! The Iggy backend against the plain Iggy SDK doing the same work on the
//! same managed `iggy-server`, in the same run:
//!
//! - durable appends: `send_messages` + `flush_unsaved_buffer(fsync)` per
//!   batch, of the same encoded payloads, into a stream of its own;
//! - catch-up: poll 1000 + store the group's offset, over the events the
//!   log wrote (without decoding them, which the log does);
//! - both on the managed server as vibesd runs it (`iggy`: every batch
//!   written and fsynced on receipt, the flush finds nothing left) and, for
//!   the record, on one keeping batches in memory up to Iggy's default 1024
//!   messages (`iggy-A`: the flush does the write and the fsync).
//!
//! Needs `VIBES_IGGY_SERVER`; says so in one line and adds no rows without.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iggy::prelude::{
    AutoLogin, Client, CompressionAlgorithm, Consumer, ConsumerGroupClient, ConsumerOffsetClient,
    Identifier, IggyError, IggyExpiry, IggyMessage, MaxTopicSize, MessageClient, Partitioning,
    PollingStrategy, StreamClient, TcpClient, TcpClientConfigBuilder, TopicClient,
};
use iggy_common::Credentials;
use vibes_core::StoredEvent;
use vibes_iggy::LogOptions;
use vibes_iggy::iggy::{Connection, IggyConfig, IggyLog, IggyManager};

use crate::{
    APPEND_WORKLOAD, CATCH_UP_BATCH, Records, Row, Workload, append_all, batches, catch_up, events,
    generic_decode, paired, timed,
};

pub(crate) async fn run(workload: &Workload) -> Vec<Row> {
    let Some(binary) = std::env::var_os("VIBES_IGGY_SERVER").map(PathBuf::from) else {
        println!("skipped: iggy rows (set VIBES_IGGY_SERVER to an iggy-server binary)");
        return Vec::new();
    };
    let mut rows = Vec::new();
    rows.extend(appends(&binary, "iggy", &[]).await);
    // The other design: the server keeps batches in memory until 1024
    // messages (its default), so only the flush makes them durable.
    let journaled = [("IGGY_SYSTEM_PARTITION_MESSAGES_REQUIRED_TO_SAVE", "1024")];
    rows.extend(appends(&binary, "iggy-flush", &journaled).await);
    rows.extend(catch_up_rows(&binary, workload.catch_up_events).await);
    rows
}

/// A managed server in a temporary directory, with `env` added to its
/// environment.
async fn server(binary: &Path, env: &[(&str, &str)]) -> (IggyManager, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = IggyConfig {
        server_binary: Some(binary.to_owned()),
        server_env: env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        ..IggyConfig::default()
    };
    let manager = IggyManager::start(&config, dir.path())
        .await
        .expect("start iggy-server");
    (manager, dir)
}

/// Durable appends of the log against raw send + flush(fsync), on a
/// managed server with `env` added to its environment.
async fn appends(binary: &Path, backend: &'static str, env: &[(&str, &str)]) -> Vec<Row> {
    let (manager, _dir) = server(binary, env).await;
    let log = IggyLog::connect(&manager.connection(), LogOptions::default())
        .await
        .expect("connect");
    let raw = Raw::connect(&manager.connection(), "bench-raw").await;
    let mut rows = Vec::new();
    for (batch, count) in APPEND_WORKLOAD {
        let events = events(count);
        let (events, raw, log) = (&events, &raw, &log);
        let (raw_rate, ours) = paired(
            move || timed(count, raw.append(events, batch)),
            move || async move {
                let prepared = batches(events, batch);
                timed(count, async {
                    append_all(log, prepared).await.expect("append");
                })
                .await
            },
        )
        .await;
        rows.push(report(Row {
            backend,
            what: format!("append_batch({batch})"),
            events_per_sec: ours,
            raw_events_per_sec: Some(raw_rate),
        }));
    }
    manager.stop().await;
    rows
}

async fn catch_up_rows(binary: &Path, total: usize) -> Vec<Row> {
    let (manager, _dir) = server(binary, &[]).await;
    let log = IggyLog::connect(&manager.connection(), LogOptions::default())
        .await
        .expect("connect");
    append_all(&log, batches(&events(total), 1000))
        .await
        .expect("fill");
    let raw = &Raw::connect(&manager.connection(), "vibes").await;
    let log = &log;
    let mut rows = Vec::new();
    for records in [Records::Forwarded, Records::Decoded] {
        let (raw_rate, ours) = paired(
            move || timed(total, raw.catch_up(total as u64, records)),
            move || async move {
                timed(total, async {
                    catch_up(log, total as u64, records)
                        .await
                        .expect("catch up");
                })
                .await
            },
        )
        .await;
        rows.push(report(Row {
            backend: "iggy",
            what: records.what(total),
            events_per_sec: ours,
            raw_events_per_sec: Some(raw_rate),
        }));
    }
    manager.stop().await;
    rows
}

fn report(row: Row) -> Row {
    row.print();
    row
}

/// The plain SDK on one connection, on topic `events` of `stream`.
struct Raw {
    client: TcpClient,
    stream: Identifier,
    topic: Identifier,
}

impl Raw {
    async fn connect(connection: &Connection, stream: &str) -> Self {
        let config = TcpClientConfigBuilder::new()
            .with_server_address(connection.address.clone())
            .with_auto_sign_in(AutoLogin::Enabled(Credentials::UsernamePassword(
                connection.username.clone(),
                connection.password.clone().into(),
            )))
            .with_no_delay()
            .build()
            .expect("client config");
        let client = TcpClient::create(Arc::new(config)).expect("client");
        client.connect().await.expect("connect");
        let stream_id = Identifier::named(stream).expect("name");
        let topic = Identifier::named("events").expect("name");
        if client
            .get_stream(&stream_id)
            .await
            .expect("get stream")
            .is_none()
        {
            client.create_stream(stream).await.expect("create stream");
        }
        if client
            .get_topic(&stream_id, &topic)
            .await
            .expect("get topic")
            .is_none()
        {
            client
                .create_topic(
                    &stream_id,
                    "events",
                    1,
                    CompressionAlgorithm::None,
                    None,
                    IggyExpiry::NeverExpire,
                    MaxTopicSize::Unlimited,
                )
                .await
                .expect("create topic");
        }
        Self {
            client,
            stream: stream_id,
            topic,
        }
    }

    /// Encodes `events` as JSON and sends them in batches, each flushed
    /// with fsync.
    async fn append(&self, events: &[StoredEvent], batch: usize) {
        for chunk in events.chunks(batch) {
            let mut messages: Vec<IggyMessage> = chunk
                .iter()
                .map(|event| {
                    let bytes = serde_json::to_vec(event).expect("encode");
                    IggyMessage::builder()
                        .payload(bytes.into())
                        .build()
                        .expect("message")
                })
                .collect();
            self.client
                .send_messages(
                    &self.stream,
                    &self.topic,
                    &Partitioning::partition_id(0),
                    &mut messages,
                )
                .await
                .expect("send");
            self.client
                .flush_unsaved_buffer(&self.stream, &self.topic, 0, true)
                .await
                .expect("flush");
        }
    }

    /// Reads `total` records as a consumer group, storing its offset after
    /// each poll.
    /// Reads every message as a consumer group, storing its offset after
    /// each poll; with [`Records::Decoded`], each also decoded generically.
    async fn catch_up(&self, total: u64, records: Records) {
        match self
            .client
            .create_consumer_group(&self.stream, &self.topic, "raw-catch-up")
            .await
        {
            Ok(_) | Err(IggyError::ConsumerGroupNameAlreadyExists(..)) => {}
            Err(err) => panic!("create group: {err}"),
        }
        let group_id = Identifier::named("raw-catch-up").expect("name");
        self.client
            .join_consumer_group(&self.stream, &self.topic, &group_id)
            .await
            .expect("join");
        let group = Consumer::group(group_id);
        let mut next = 0u64;
        let mut bytes = 0usize;
        while next < total {
            let polled = self
                .client
                .poll_messages(
                    &self.stream,
                    &self.topic,
                    Some(0),
                    &group,
                    &PollingStrategy::offset(next),
                    CATCH_UP_BATCH as u32,
                    false,
                )
                .await
                .expect("poll");
            let last = polled.messages.last().expect("the log holds the events");
            next = last.header.offset + 1;
            for message in &polled.messages {
                if records == Records::Decoded {
                    generic_decode(&message.payload);
                }
                bytes += message.payload.len();
            }
            self.client
                .store_consumer_offset(&group, &self.stream, &self.topic, Some(0), next - 1)
                .await
                .expect("store offset");
        }
        assert!(bytes > 0);
    }
}
