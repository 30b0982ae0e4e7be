//! [`IggyLog`]: the contract of `log.rs` kept by an `iggy-server`.
//!
//! **Layout.** Stream [`STREAM`], topic [`TOPIC`] with exactly one
//! partition, created on connect if missing (a concurrent creator's "already
//! exists" is fine). Each record is one Iggy message: its payload is
//! [`StoredEvent::encode`], its message id the event's UUID. Offsets are the
//! partition's offsets, which Iggy makes dense and 0-based.
//!
//! **Durability.** An append returns only once its batch is fsynced:
//! - on the managed server, which vibesd sets up to write and fsync every
//!   batch before it answers the send
//!   (`system.partition.messages_required_to_save = 1`, `enforce_fsync =
//!   true`; see [`Connection::fsyncs_each_send`]), the answer to
//!   `send_messages` is that proof;
//! - on an external server the log flushes after each send
//!   (`flush_unsaved_buffer(fsync = true)`). Such a server should also run
//!   with `system.partition.enforce_fsync = true`: its flush skips the fsync
//!   when the batch already left memory (a batch over the size threshold,
//!   or the periodic saver, which never fsyncs), and only that setting makes
//!   those writes safe against a machine crash (against an `iggy-server`
//!   crash the page cache suffices).
//!
//! Measured on a 2-core VM with 200-byte events (`benches/log/iggy.rs`; the
//! VM's disk makes the figures vary by ±40% between runs), write-on-receipt
//! beats the server's default of writing at the flush, which fsyncs the log
//! and index twice (once writing, once flushing): raw SDK durable appends of
//! 1 / 100 / 1000 events ran at ~650-720 / 40-70k / 180-360k events/s,
//! against ~340-640 / 20-54k / 185-425k. Skipping the flush saves a round
//! trip, which on that VM costs 0.3-1.3 ms (cross-CPU wake-ups). One
//! weakness remains: the server ignores fsync errors on those writes.
//!
//! **Append offsets.** Iggy assigns offsets on the server, so the log reads
//! them back rather than counting. Appends through one [`IggyLog`] take turns
//! (a mutex). After the flush the partition's high-water mark is read; if it
//! grew by exactly the batch's size since the last mark this log saw, the
//! batch is the last `n` records. Otherwise another producer wrote in
//! between, and the batch is found by its message ids, scanning back from the
//! end. So offsets stay right with other producers (which then cost one scan
//! of the records they added); what is not supported is another process
//! appending *the same events* (the same UUIDs).
//!
//! **Failures.** Every call that is safe to repeat is retried on a new
//! connection while the server is unreachable, for up to
//! [`RECONNECT_WINDOW`]. An append whose connection fails is not blindly
//! resent: after reconnecting the log looks for the batch by id, and resends
//! it only if it is not there (a killed server loses what it had not yet
//! written), then makes sure it is on disk. A server that answers with an error fails
//! the call with [`LogError::Unavailable`] and nothing is acknowledged. A
//! server killed between writing a batch and indexing it leaves a tail that
//! breaks later reads; the manager cuts it off before restarting the server
//! (`iggy/repair.rs`), which nobody does for an external server.
//!
//! **Groups.** Each group is an Iggy consumer group whose stored offset is
//! the group's committed offset (Iggy stores the last *consumed* offset, as
//! the contract does). Each consumer has its own connection, because group
//! membership belongs to a connection: the consumer joins when it opens and
//! again after every reconnect (the session's generation says when), and
//! leaves when it is dropped (the connection closes). Polls read as a plain,
//! offset-less consumer at the consumer's own position, so membership only
//! matters for storing and deleting offsets.
//!
//! **Waking polls.** Iggy has no long poll. An append through this log
//! publishes the new high-water mark (`wait.rs`), and an idle poll waits on
//! that, so an event appended by this vibesd reaches its groups at once, as
//! on the local backends. Other producers' appends are found by asking
//! again on a timer: the pause starts at 0.5 ms and doubles up to 50 ms,
//! unless [`IggyLog::set_poll_pauses`] says otherwise.
//!
//! **Caveats.** Iggy writes group offsets without fsync, so a machine crash
//! can move a group back (it then re-reads: at-least-once). A group opened
//! with [`StartPosition::End`] records its start just after creating the
//! group; a crash in between leaves a group with no offset, which resumes at
//! the beginning.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use iggy::prelude::{
    CompressionAlgorithm, Consumer, ConsumerGroupClient, ConsumerOffsetClient, Identifier,
    IggyError, IggyExpiry, IggyMessage, MaxTopicSize, MessageClient, Partitioning, PolledMessages,
    PollingStrategy, StreamClient, TcpClient, TopicClient,
};
use tokio::sync::watch;
use tokio::time::Instant;
use vibes_core::StoredEvent;

use super::session::{RECONNECT_WINDOW, Session, call, is_transient};
use super::{Connection, PARTITION, STREAM, TOPIC};
use crate::log::{check_batch, check_group_name, check_read, encode_batch, seek_target};
use crate::wait::HighWaterMark;
use crate::{
    BackendKind, EventConsumer, EventLog, GroupOffset, LogError, LogOptions, Offset, Record,
    SeekTo, StartPosition,
};

/// How long [`IggyLog::connect`] waits for an unreachable server.
const CONNECT_WINDOW: Duration = Duration::from_secs(10);

/// The first pause of an idle poll, unless set otherwise; it doubles up to
/// [`POLL_PAUSE_LIMIT`].
const POLL_FIRST_PAUSE: Duration = Duration::from_micros(500);
const POLL_PAUSE_LIMIT: Duration = Duration::from_millis(50);
/// The shortest pause [`IggyLog::set_poll_pauses`] takes: an idle poll never
/// asks the server back to back.
const POLL_SHORTEST_PAUSE: Duration = Duration::from_micros(100);

/// How many records one page of the scan for a batch's ids reads.
const LOCATE_PAGE: u64 = 1024;

/// How long storing a group's offset waits for the server to hand the
/// partition to this consumer (a dropped consumer of the same group may not
/// have left yet).
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(10);

/// The name range reads and polls use: a plain consumer that never stores an
/// offset.
const READER: &str = "vibesd-reader";

/// A request to the server failed.
#[derive(Debug, thiserror::Error)]
#[error("request to iggy-server at {address} failed")]
struct RequestFailed {
    address: String,
    #[source]
    source: IggyError,
}

/// The server holds something vibesd cannot use as its log.
#[derive(Debug, thiserror::Error)]
enum LayoutError {
    #[error(
        "topic {STREAM}/{TOPIC} has {partitions} partitions, but vibesd needs exactly one \
         (a total order); delete the topic or point vibesd at another server"
    )]
    Partitions { partitions: u32 },
    #[error("topic {STREAM}/{TOPIC} is missing on iggy-server (was it deleted?)")]
    TopicMissing,
    #[error(
        "the batch was sent but its records were not found among offsets {from}..{to}; \
         its outcome is unknown"
    )]
    BatchNotFound { from: Offset, to: Offset },
}

/// A log on an `iggy-server`. Cheap to clone; clones share the connections.
#[derive(Debug, Clone)]
pub struct IggyLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Connection,
    options: LogOptions,
    names: Names,
    /// Appends: sending, flushing and reading back offsets.
    writer: Session,
    /// Reads and high-water marks, so a history page never waits behind an
    /// fsync.
    reader: Session,
    /// Held for the whole of an append; see the module doc.
    append: tokio::sync::Mutex<AppendState>,
    /// The end of the last batch this log appended: what wakes idle polls.
    appended: HighWaterMark,
    /// The first and the longest pause between an idle poll's requests,
    /// in microseconds.
    poll_first_pause_us: AtomicU64,
    poll_pause_limit_us: AtomicU64,
}

#[derive(Debug, Default)]
struct AppendState {
    /// The high-water mark this log last read after an append, if it still
    /// trusts it; `None` after a failure.
    seen_high_water_mark: Option<Offset>,
}

/// The identifiers every request names.
#[derive(Debug, Clone)]
struct Names {
    stream: Identifier,
    topic: Identifier,
    reader: Consumer,
}

impl Names {
    fn new() -> Result<Self, IggyError> {
        Ok(Self {
            stream: Identifier::named(STREAM)?,
            topic: Identifier::named(TOPIC)?,
            reader: Consumer::new(Identifier::named(READER)?),
        })
    }
}

fn failed(connection: &Connection, action: &'static str, source: IggyError) -> LogError {
    LogError::unavailable(
        BackendKind::Iggy,
        action,
        RequestFailed {
            address: connection.address.clone(),
            source,
        },
    )
}

impl IggyLog {
    /// Connects to the server, creating the stream and topic if missing.
    pub async fn connect(connection: &Connection, options: LogOptions) -> Result<Self, LogError> {
        let names = Names::new().map_err(|err| failed(connection, "connect", err))?;
        let deadline = Instant::now() + CONNECT_WINDOW;
        let writer = Session::open(connection, deadline)
            .await
            .map_err(|err| failed(connection, "connect", err))?;
        let reader = Session::open(connection, deadline)
            .await
            .map_err(|err| failed(connection, "connect", err))?;
        ensure_layout(&writer, &names, deadline)
            .await
            .map_err(|err| match err {
                Setup::Server(err) => failed(connection, "create the stream and topic", err),
                Setup::Layout(err) => {
                    LogError::unavailable(BackendKind::Iggy, "use the stream and topic", err)
                }
            })?;
        tracing::debug!(address = %connection.address, "connected to iggy-server");
        Ok(Self {
            inner: Arc::new(Inner {
                connection: connection.clone(),
                options,
                names,
                writer,
                reader,
                append: tokio::sync::Mutex::new(AppendState::default()),
                appended: HighWaterMark::new(0),
                poll_first_pause_us: AtomicU64::new(micros(POLL_FIRST_PAUSE)),
                poll_pause_limit_us: AtomicU64::new(micros(POLL_PAUSE_LIMIT)),
            }),
        })
    }

    /// Sets how an idle poll paces its requests to the server, for every
    /// consumer of this log: after an empty answer it waits `first` (0.5 ms
    /// unless set), doubling each time up to `limit` (50 ms unless set; a
    /// `limit` below `first` counts as `first`, and a `first` below 0.1 ms
    /// as 0.1 ms, so an idle poll never asks back to back). `limit` bounds
    /// how late a group sees what *other* producers append; an append
    /// through this log wakes the polls whatever the pauses are.
    pub fn set_poll_pauses(&self, first: Duration, limit: Duration) {
        let first = first.max(POLL_SHORTEST_PAUSE);
        let inner = &self.inner;
        inner
            .poll_first_pause_us
            .store(micros(first), Ordering::Relaxed);
        inner
            .poll_pause_limit_us
            .store(micros(limit.max(first)), Ordering::Relaxed);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

enum Setup {
    Server(IggyError),
    Layout(LayoutError),
}

impl From<IggyError> for Setup {
    fn from(err: IggyError) -> Self {
        Self::Server(err)
    }
}

/// Creates the stream and the one-partition topic unless they exist.
async fn ensure_layout(session: &Session, names: &Names, deadline: Instant) -> Result<(), Setup> {
    let stream = call!(session, deadline, |c| c.get_stream(&names.stream).await)?;
    if stream.is_none() {
        match call!(session, deadline, |c| c.create_stream(STREAM).await) {
            Ok(_) | Err(IggyError::StreamNameAlreadyExists(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let mut topic = call!(session, deadline, |c| c
        .get_topic(&names.stream, &names.topic)
        .await)?;
    if topic.is_none() {
        let created = call!(session, deadline, |c| c
            .create_topic(
                &names.stream,
                TOPIC,
                1,
                CompressionAlgorithm::None,
                None,
                IggyExpiry::NeverExpire,
                MaxTopicSize::Unlimited,
            )
            .await);
        match created {
            Ok(_) | Err(IggyError::TopicNameAlreadyExists(..)) => {}
            Err(err) => return Err(err.into()),
        }
        topic = call!(session, deadline, |c| c
            .get_topic(&names.stream, &names.topic)
            .await)?;
    }
    match topic {
        Some(topic) if topic.partitions_count == 1 => Ok(()),
        Some(topic) => Err(Setup::Layout(LayoutError::Partitions {
            partitions: topic.partitions_count,
        })),
        None => Err(Setup::Layout(LayoutError::TopicMissing)),
    }
}

/// The partition's high-water mark, as the server has it.
async fn high_water_mark(
    session: &Session,
    names: &Names,
    deadline: Instant,
) -> Result<Result<Offset, LayoutError>, IggyError> {
    let topic = call!(session, deadline, |c| c
        .get_topic(&names.stream, &names.topic)
        .await)?;
    let Some(partition) = topic.and_then(|topic| {
        topic
            .partitions
            .into_iter()
            .find(|partition| partition.id == PARTITION)
    }) else {
        return Ok(Err(LayoutError::TopicMissing));
    };
    // Iggy reports the last offset, which is 0 both when the partition is
    // empty and when it holds one record.
    let empty = partition.current_offset == 0
        && partition.messages_count == 0
        && partition.size.as_bytes_u64() == 0;
    Ok(Ok(if empty {
        0
    } else {
        partition.current_offset + 1
    }))
}

/// Reads up to `count` records from `from` on, as the offset-less reader.
async fn poll_from(
    client: &TcpClient,
    names: &Names,
    from: Offset,
    count: u32,
) -> Result<PolledMessages, IggyError> {
    client
        .poll_messages(
            &names.stream,
            &names.topic,
            Some(PARTITION),
            &names.reader,
            &PollingStrategy::offset(from),
            count,
            false,
        )
        .await
}

/// The records of `polled` from `from` on, their payloads shared, not copied.
fn records(polled: PolledMessages, from: Offset) -> Vec<Record> {
    polled
        .messages
        .into_iter()
        .filter(|message| message.header.offset >= from)
        .map(|message| Record {
            offset: message.header.offset,
            payload: message.payload,
        })
        .collect()
}

fn poll_count(max: usize) -> u32 {
    u32::try_from(max).unwrap_or(u32::MAX)
}

impl Inner {
    fn failed(&self, action: &'static str, err: IggyError) -> LogError {
        failed(&self.connection, action, err)
    }

    async fn high_water_mark(
        &self,
        session: &Session,
        deadline: Instant,
    ) -> Result<Offset, LogError> {
        high_water_mark(session, &self.names, deadline)
            .await
            .map_err(|err| self.failed("read the high-water mark", err))?
            .map_err(|err| {
                LogError::unavailable(BackendKind::Iggy, "read the high-water mark", err)
            })
    }

    /// Sends the batch and flushes it to disk.
    async fn send_durably(
        &self,
        client: &TcpClient,
        messages: &mut [IggyMessage],
    ) -> Result<(), IggyError> {
        client
            .send_messages(
                &self.names.stream,
                &self.names.topic,
                &Partitioning::partition_id(PARTITION),
                messages,
            )
            .await?;
        if self.connection.fsyncs_each_send {
            // The answer to the send came after the server's fsync.
            return Ok(());
        }
        self.flush(client).await
    }

    async fn flush(&self, client: &TcpClient) -> Result<(), IggyError> {
        client
            .flush_unsaved_buffer(&self.names.stream, &self.names.topic, PARTITION, true)
            .await
    }

    /// Where the batch with message ids `ids` landed at or after `since`,
    /// if it did. Scans back from the end in pages, since a batch just sent
    /// sits near the end; consecutive pages overlap by a batch, so a batch
    /// that straddles two pages is seen whole in one of them.
    async fn locate(
        &self,
        ids: &[u128],
        since: Offset,
        deadline: Instant,
    ) -> Result<Option<Range<Offset>>, LogError> {
        let n = ids.len() as Offset;
        let mut page_end = self.high_water_mark(&self.writer, deadline).await?;
        while page_end > since {
            let page_start = page_end.saturating_sub(LOCATE_PAGE + n).max(since);
            let count = poll_count((page_end - page_start) as usize);
            let polled = call!(self.writer, deadline, |c| poll_from(
                c,
                &self.names,
                page_start,
                count
            )
            .await)
            .map_err(|err| self.failed("look for an appended batch", err))?;
            let messages = &polled.messages;
            let found = messages.windows(ids.len()).rev().find(|window| {
                window
                    .iter()
                    .zip(ids)
                    .all(|(message, id)| message.header.id == *id)
            });
            if let Some(window) = found {
                let first = window[0].header.offset;
                return Ok(Some(first..first + n));
            }
            if page_start == since {
                break;
            }
            // page_start > since means the page was LOCATE_PAGE + n long.
            page_end = page_start + n;
        }
        Ok(None)
    }

    async fn append_batch(&self, events: Vec<StoredEvent>) -> Result<Range<Offset>, LogError> {
        let encoded = encode_batch(&events);
        check_batch(&encoded, self.options.max_event_bytes)?;
        let ids: Vec<u128> = events
            .iter()
            .map(|event| event.event_id.as_u128())
            .collect();
        self.append_encoded(ids, encoded.into_iter().map(Bytes::from).collect())
            .await
    }

    /// Appends records as they are. A record that is not an event (which
    /// only a copied log holds) gets a random message id: ids only serve
    /// to find a batch after a lost connection.
    async fn append_records(&self, payloads: Vec<Bytes>) -> Result<Range<Offset>, LogError> {
        let ids = payloads
            .iter()
            .map(|payload| {
                StoredEvent::decode(payload)
                    .map_or_else(|_| rand::random::<u128>(), |event| event.event_id.as_u128())
            })
            .collect();
        self.append_encoded(ids, payloads).await
    }

    async fn append_encoded(
        &self,
        ids: Vec<u128>,
        encoded: Vec<Bytes>,
    ) -> Result<Range<Offset>, LogError> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        if encoded.is_empty() {
            let end = self.high_water_mark(&self.reader, deadline).await?;
            return Ok(end..end);
        }
        let mut messages = ids
            .iter()
            .zip(encoded)
            .map(|(&id, payload)| IggyMessage::builder().id(id).payload(payload).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| self.failed("append", err))?;
        let n = messages.len() as Offset;

        let mut state = self.append.lock().await;
        let before = match state.seen_high_water_mark.take() {
            Some(mark) => mark,
            None => self.high_water_mark(&self.writer, deadline).await?,
        };
        let landed = loop {
            let (client, generation) = self.writer.client();
            match self.send_durably(&client, &mut messages).await {
                Ok(()) => break None,
                Err(err) if is_transient(&err) && Instant::now() < deadline => {
                    tracing::warn!(error = %vibes_core::ErrorChain(&err), "append interrupted; checking whether the batch landed");
                    self.writer
                        .reconnect(generation, deadline)
                        .await
                        .map_err(|err| self.failed("append", err))?;
                    let Some(range) = self.locate(&ids, before, deadline).await? else {
                        continue;
                    };
                    // It landed; make sure it is on disk before saying so
                    // (a server that fsyncs each send indexed it only after
                    // its fsync, so there it is).
                    if !self.connection.fsyncs_each_send {
                        call!(self.writer, deadline, |c| self.flush(c).await)
                            .map_err(|err| self.failed("append", err))?;
                    }
                    break Some(range);
                }
                Err(err) => return Err(self.failed("append", err)),
            }
        };
        let range = match landed {
            Some(range) => range,
            None => {
                let after = self.high_water_mark(&self.writer, deadline).await?;
                if after.checked_sub(before) == Some(n) {
                    state.seen_high_water_mark = Some(after);
                    before..after
                } else {
                    // Another producer wrote meanwhile: find the batch.
                    self.locate(&ids, before, deadline).await?.ok_or_else(|| {
                        LogError::unavailable(
                            BackendKind::Iggy,
                            "append",
                            LayoutError::BatchNotFound {
                                from: before,
                                to: after,
                            },
                        )
                    })?
                }
            }
        };
        drop(state);
        self.appended.advance(range.end);
        Ok(range)
    }

    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        if max > 0 {
            let polled = call!(self.reader, deadline, |c| poll_from(
                c,
                &self.names,
                from,
                poll_count(max)
            )
            .await)
            .map_err(|err| self.failed("read", err))?;
            let records = records(polled, from);
            if !records.is_empty() {
                return Ok(records);
            }
        }
        // Nothing there: the end of the log, or beyond it.
        check_read(from, self.high_water_mark(&self.reader, deadline).await?)?;
        Ok(Vec::new())
    }

    async fn consumer(
        self: &Arc<Self>,
        group: &str,
        start: StartPosition,
    ) -> Result<Box<dyn EventConsumer>, LogError> {
        check_group_name(group)?;
        let deadline = Instant::now() + RECONNECT_WINDOW;
        let session = Session::open(&self.connection, deadline)
            .await
            .map_err(|err| self.failed("open a consumer", err))?;
        let group_id =
            Identifier::named(group).map_err(|err| self.failed("open a consumer", err))?;
        let created = call!(session, deadline, |c| c
            .create_consumer_group(&self.names.stream, &self.names.topic, group)
            .await);
        let created = match created {
            Ok(_) => true,
            Err(IggyError::ConsumerGroupNameAlreadyExists(..)) => false,
            Err(err) => return Err(self.failed("create a consumer group", err)),
        };
        let mut consumer = IggyConsumer {
            log: self.clone(),
            session,
            group: group.to_owned(),
            iggy_group: Consumer::group(group_id.clone()),
            group_id,
            position: 0,
            joined: None,
            appended: self.appended.subscribe(),
        };
        consumer
            .join(deadline)
            .await
            .map_err(|err| consumer.failed("join the consumer group", err))?;
        consumer.position = match (created, start) {
            (true, StartPosition::Beginning) => 0,
            (true, StartPosition::End) => {
                // Record the end as done now, so a restart before the first
                // commit still starts here. An empty log cannot store an
                // offset, and needs none: its end is offset 0.
                let end = self.high_water_mark(&consumer.session, deadline).await?;
                if end > 0 {
                    consumer.store(end - 1, deadline).await?;
                }
                end
            }
            (false, _) => consumer
                .committed(deadline)
                .await?
                .map_or(0, |offset| offset + 1),
        };
        tracing::debug!(
            group,
            created,
            position = consumer.position,
            "consumer open"
        );
        Ok(Box::new(consumer))
    }
}

#[async_trait]
impl EventLog for IggyLog {
    fn backend(&self) -> BackendKind {
        BackendKind::Iggy
    }

    async fn append_batch(&self, events: Vec<StoredEvent>) -> Result<Range<Offset>, LogError> {
        self.inner.append_batch(events).await
    }

    async fn append_records(&self, payloads: Vec<Bytes>) -> Result<Range<Offset>, LogError> {
        self.inner.append_records(payloads).await
    }

    async fn groups(&self) -> Result<Vec<GroupOffset>, LogError> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        let inner = &self.inner;
        let listed = call!(inner.reader, deadline, |c| c
            .get_consumer_groups(&inner.names.stream, &inner.names.topic)
            .await)
        .map_err(|err| inner.failed("list the consumer groups", err))?;
        let mut names: Vec<String> = listed.into_iter().map(|group| group.name).collect();
        names.sort();
        let mut groups = Vec::with_capacity(names.len());
        for group in names {
            // Reading a group's offset takes a member's connection.
            let consumer = inner.consumer(&group, StartPosition::Beginning).await?;
            let committed = consumer.committed_offset().await?;
            groups.push(GroupOffset { group, committed });
        }
        Ok(groups)
    }

    async fn high_water_mark(&self) -> Result<Offset, LogError> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        self.inner
            .high_water_mark(&self.inner.reader, deadline)
            .await
    }

    async fn read(&self, from: Offset, max: usize) -> Result<Vec<Record>, LogError> {
        self.inner.read(from, max).await
    }

    async fn consumer(
        &self,
        group: &str,
        start: StartPosition,
    ) -> Result<Box<dyn EventConsumer>, LogError> {
        self.inner.consumer(group, start).await
    }
}

/// A group's reader: its own connection, which is its membership.
#[derive(Debug)]
struct IggyConsumer {
    log: Arc<Inner>,
    /// This consumer's connection; closing it (on drop) leaves the group.
    session: Session,
    group: String,
    group_id: Identifier,
    /// The group as Iggy names it in offset requests.
    iggy_group: Consumer,
    position: Offset,
    /// The session generation this consumer last joined the group on.
    joined: Option<u64>,
    /// Changes when this log appends: an idle poll asks again at once.
    appended: watch::Receiver<Offset>,
}

/// Whether `err` says this connection is not (or no longer) the group's
/// member for the partition, which joining again may fix.
fn is_membership(err: &IggyError) -> bool {
    matches!(
        err,
        IggyError::ConsumerGroupMemberNotFound(..) | IggyError::NotResolvedConsumer(_)
    )
}

impl IggyConsumer {
    fn failed(&self, action: &'static str, err: IggyError) -> LogError {
        self.log.failed(action, err)
    }

    /// Joins the group on the current connection unless already done.
    async fn join(&mut self, deadline: Instant) -> Result<(), IggyError> {
        if self.joined == Some(self.session.generation()) {
            return Ok(());
        }
        let names = &self.log.names;
        call!(self.session, deadline, |c| c
            .join_consumer_group(&names.stream, &names.topic, &self.group_id)
            .await)?;
        // Only this consumer uses its session, so no reconnect can have
        // slipped in since the join succeeded.
        self.joined = Some(self.session.generation());
        Ok(())
    }

    /// Runs an offset update that needs membership, joining (again) first
    /// and waiting for the partition if a previous member still holds it.
    async fn as_member(&mut self, deadline: Instant, update: Update) -> Result<(), IggyError> {
        let membership_deadline = Instant::now() + MEMBERSHIP_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            self.join(deadline).await?;
            let names = &self.log.names;
            let result = call!(self.session, deadline, |c| match update {
                Update::Store(offset) => {
                    c.store_consumer_offset(
                        &self.iggy_group,
                        &names.stream,
                        &names.topic,
                        Some(PARTITION),
                        offset,
                    )
                    .await
                }
                Update::Delete => {
                    c.delete_consumer_offset(
                        &self.iggy_group,
                        &names.stream,
                        &names.topic,
                        Some(PARTITION),
                    )
                    .await
                }
            });
            match result {
                Err(err) if is_membership(&err) && Instant::now() < membership_deadline => {
                    tracing::debug!(group = %self.group, error = %err, "not the group's member; joining again");
                    self.joined = None;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    async fn store(&mut self, offset: Offset, deadline: Instant) -> Result<(), LogError> {
        match self.as_member(deadline, Update::Store(offset)).await {
            Ok(()) => Ok(()),
            Err(IggyError::InvalidOffset(_)) => Err(LogError::OffsetOutOfRange {
                offset,
                high_water_mark: self.log.high_water_mark(&self.session, deadline).await?,
            }),
            Err(err) => Err(self.failed("store the group's offset", err)),
        }
    }

    /// Forgets the group's offset: nothing is done.
    async fn clear(&mut self, deadline: Instant) -> Result<(), LogError> {
        match self.as_member(deadline, Update::Delete).await {
            Ok(()) | Err(IggyError::ConsumerOffsetNotFound(_)) => Ok(()),
            Err(err) => Err(self.failed("delete the group's offset", err)),
        }
    }

    async fn committed(&self, deadline: Instant) -> Result<Option<Offset>, LogError> {
        let names = &self.log.names;
        let info = call!(self.session, deadline, |c| c
            .get_consumer_offset(
                &self.iggy_group,
                &names.stream,
                &names.topic,
                Some(PARTITION)
            )
            .await)
        .map_err(|err| self.failed("read the group's offset", err))?;
        Ok(info.map(|info| info.stored_offset))
    }
}

/// An offset change that needs group membership.
#[derive(Debug, Clone, Copy)]
enum Update {
    Store(Offset),
    Delete,
}

#[async_trait]
impl EventConsumer for IggyConsumer {
    fn group(&self) -> &str {
        &self.group
    }

    fn position(&self) -> Offset {
        self.position
    }

    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError> {
        let deadline = Instant::now() + timeout;
        if max == 0 {
            return Ok(Vec::new());
        }
        let first = Duration::from_micros(self.log.poll_first_pause_us.load(Ordering::Relaxed));
        let limit = Duration::from_micros(self.log.poll_pause_limit_us.load(Ordering::Relaxed));
        let mut pause = first;
        loop {
            // An append from here on wakes the wait below, so none is missed
            // between this request and the wait.
            self.appended.mark_unchanged();
            let position = self.position;
            let names = &self.log.names;
            let polled = call!(self.session, deadline, |c| poll_from(
                c,
                names,
                position,
                poll_count(max)
            )
            .await)
            .map_err(|err| self.failed("poll", err))?;
            let records = records(polled, position);
            if let Some(last) = records.last() {
                self.position = last.offset + 1;
                return Ok(records);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(records);
            }
            let woken = tokio::time::timeout(pause.min(left), self.appended.changed()).await;
            match woken {
                // This log appended: ask again now.
                Ok(Ok(())) => pause = first,
                // The sender lives in the log, which this consumer holds, so
                // it never closes; were it to, the timer would still pace.
                Ok(Err(_)) => {
                    tokio::time::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(limit);
                }
                Err(_elapsed) => pause = (pause * 2).min(limit),
            }
        }
    }

    async fn commit(&mut self, offset: Offset) -> Result<(), LogError> {
        // The server refuses offsets it does not hold (and any offset on an
        // empty partition), which is exactly the contract's rule.
        self.store(offset, Instant::now() + RECONNECT_WINDOW).await
    }

    async fn seek(&mut self, to: SeekTo) -> Result<Offset, LogError> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        let end = self.log.high_water_mark(&self.session, deadline).await?;
        let position = seek_target(to, end)?;
        match position.checked_sub(1) {
            Some(committed) => self.store(committed, deadline).await?,
            None => self.clear(deadline).await?,
        }
        self.position = position;
        Ok(position)
    }

    async fn committed_offset(&self) -> Result<Option<Offset>, LogError> {
        self.committed(Instant::now() + RECONNECT_WINDOW).await
    }
}
