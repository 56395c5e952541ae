//! A feed's Kafka reader, natively: librdkafka (the `rdkafka` crate, built from its
//! bundled sources) reading the partitions a feed assigns, from the offsets it
//! gives, and handing a batch over by column (partitions, offsets, keys, values)
//! with no Python object made per record but its key and value.
//!
//! confluent-kafka's `Consumer.consume` makes a `Message` a record, and the feed
//! then calls four of its methods to read it by column: 1.3 to 2 µs of CPU a
//! record under the GIL, more than the native fold of the same delivery report
//! (`native/bench_consume.py`). Here the records are taken and copied with the
//! GIL released; the Python objects a batch needs are then made at once, a key
//! equal to the record before's reusing its bytes (a batch of reports is mostly
//! one job's key).
//!
//! `streams.kafka.native_reader` wraps it for `streams.aggregate.command_feed`;
//! tests/streams/test_feed_reader_native.py keeps it equal to confluent-kafka's
//! reading of the same records.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// librdkafka's log lines kept for Python between two takes (the rest are counted).
const KEPT_LINES: usize = 100;

/// librdkafka's log lines of level warning or worse, not yet taken by Python, and how
/// many were dropped (beyond `KEPT_LINES`).
#[derive(Default)]
pub(crate) struct LogLines(Mutex<(Vec<(i32, String)>, usize)>);

impl LogLines {
    pub(crate) fn keep(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let level = level as i32;
        if level > RDKafkaLogLevel::Warning as i32 {
            return;
        }
        let mut lines = self.0.lock().expect("log lock");
        if lines.0.len() < KEPT_LINES {
            lines.0.push((level, format!("{fac}: {log_message}")));
        } else {
            lines.1 += 1;
        }
    }

    pub(crate) fn take(&self) -> (Vec<(i32, String)>, usize) {
        std::mem::take(&mut *self.0.lock().expect("log lock"))
    }
}

/// What librdkafka reports outside the records: its statistics and its log.
#[derive(Default)]
struct Reports {
    /// The last statistics JSON not yet taken.
    stats: Mutex<Option<String>>,
    lines: LogLines,
}

impl ClientContext for Reports {
    fn stats_raw(&self, statistics: &[u8]) {
        let text = String::from_utf8_lossy(statistics).into_owned();
        *self.stats.lock().expect("stats lock") = Some(text);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.lines.keep(level, fac, log_message);
    }

    // Global errors come back from `poll` too (as records' errors): `take` gives them.
    fn error(&self, _error: KafkaError, _reason: &str) {}
}

impl ConsumerContext for Reports {}

/// The records of one take, copied out of librdkafka's buffers.
#[derive(Default)]
struct Taken {
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    /// Each record's key and value: a range of `bytes`, or None.
    keys: Vec<Option<(usize, usize)>>,
    values: Vec<Option<(usize, usize)>>,
    bytes: Vec<u8>,
    /// (text, fatal) of each error met instead of a record.
    errors: Vec<(String, bool)>,
}

impl Taken {
    fn keep(&mut self, data: Option<&[u8]>) -> Option<(usize, usize)> {
        data.map(|data| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(data);
            (start, self.bytes.len())
        })
    }

    fn len(&self) -> usize {
        self.offsets.len() + self.errors.len()
    }
}

/// (partitions, offsets, keys, values, errors as (text, fatal)) of a take.
type Columns<'py> = (
    Vec<i32>,
    Vec<i64>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Vec<(String, bool)>,
);

#[pyclass(module = "bulkstream_native")]
pub struct FeedReader {
    topic: String,
    /// None once closed. Shared by every call but `close`: librdkafka takes calls
    /// from any thread, so a seek need not wait for a take's poll to end.
    consumer: RwLock<Option<BaseConsumer<Reports>>>,
}

fn kafka_error(error: KafkaError) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(format!("librdkafka: {error}"))
}

fn closed() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("the reader is closed")
}

impl FeedReader {
    fn with<T>(&self, call: impl FnOnce(&BaseConsumer<Reports>) -> PyResult<T>) -> PyResult<T> {
        let consumer = self.consumer.read().expect("consumer lock");
        call(consumer.as_ref().ok_or_else(closed)?)
    }
}

/// A feed's offset as librdkafka takes it: a negative one is librdkafka's logical
/// offset (-2 the beginning, -1 the end), as confluent-kafka's `OFFSET_*` are.
fn offset(raw: i64) -> Offset {
    match raw {
        -2 => Offset::Beginning,
        -1 => Offset::End,
        _ if raw < 0 => Offset::Stored,
        _ => Offset::Offset(raw),
    }
}

#[pymethods]
impl FeedReader {
    /// A consumer of `topic` made with librdkafka's properties `config`; it reads
    /// nothing until `assign`.
    #[new]
    fn new(config: Vec<(String, String)>, topic: String) -> PyResult<Self> {
        let mut client = ClientConfig::new();
        for (name, value) in config {
            client.set(name, value);
        }
        // The crate asks librdkafka for errors only, unless Rust's `log` wants more.
        client.set_log_level(RDKafkaLogLevel::Warning);
        let consumer: BaseConsumer<Reports> = client
            .create_with_context(Reports::default())
            .map_err(kafka_error)?;
        Ok(FeedReader {
            topic,
            consumer: RwLock::new(Some(consumer)),
        })
    }

    /// Read these partitions of the topic, each from its offset, and no other.
    fn assign(&self, py: Python<'_>, starts: Vec<(i32, i64)>) -> PyResult<()> {
        py.detach(|| {
            self.with(|consumer| {
                let mut list = TopicPartitionList::new();
                for (partition, start) in starts {
                    list.add_partition_offset(&self.topic, partition, offset(start))
                        .map_err(kafka_error)?;
                }
                consumer.assign(&list).map_err(kafka_error)
            })
        })
    }

    /// Read no partition.
    fn unassign(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.with(|consumer| consumer.unassign().map_err(kafka_error)))
    }

    /// Read a partition again from this offset (not waiting for the fetch to move).
    fn seek(&self, py: Python<'_>, partition: i32, start: i64) -> PyResult<()> {
        py.detach(|| {
            self.with(|consumer| {
                consumer
                    .seek(&self.topic, partition, offset(start), Duration::ZERO)
                    .map_err(kafka_error)
            })
        })
    }

    /// Up to `limit` records (and errors) librdkafka has fetched; when it has none,
    /// those that come within `timeout` seconds. By column: (partitions, offsets,
    /// keys, values, errors as (text, fatal)).
    fn take<'py>(&self, py: Python<'py>, limit: usize, timeout: f64) -> PyResult<Columns<'py>> {
        let wait = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::ZERO);
        let taken = py.detach(|| {
            self.with(|consumer| {
                let mut taken = Taken::default();
                let until = Instant::now() + wait;
                while taken.len() < limit {
                    let left = if taken.len() == 0 {
                        until.saturating_duration_since(Instant::now())
                    } else {
                        Duration::ZERO
                    };
                    match consumer.poll(left) {
                        None if taken.len() > 0 || left.is_zero() => break,
                        None => continue, // an event served (statistics): wait on
                        Some(Ok(record)) => {
                            taken.partitions.push(record.partition());
                            taken.offsets.push(record.offset());
                            let key = taken.keep(record.key());
                            taken.keys.push(key);
                            let value = taken.keep(record.payload());
                            taken.values.push(value);
                        }
                        Some(Err(error)) => {
                            let fatal = matches!(error, KafkaError::MessageConsumptionFatal(_));
                            taken.errors.push((error.to_string(), fatal));
                        }
                    }
                }
                Ok(taken)
            })
        })?;
        let bytes = &taken.bytes;
        let keys = PyList::empty(py);
        let mut last: Option<(&[u8], Bound<'py, PyBytes>)> = None;
        for key in &taken.keys {
            match key {
                None => keys.append(py.None())?,
                Some((start, end)) => {
                    let data = &bytes[*start..*end];
                    let made = match &last {
                        Some((before, made)) if *before == data => made.clone(),
                        _ => PyBytes::new(py, data),
                    };
                    keys.append(&made)?;
                    last = Some((data, made));
                }
            }
        }
        let values = PyList::empty(py);
        for value in &taken.values {
            match value {
                None => values.append(py.None())?,
                Some((start, end)) => values.append(PyBytes::new(py, &bytes[*start..*end]))?,
            }
        }
        Ok((taken.partitions, taken.offsets, keys, values, taken.errors))
    }

    /// librdkafka's last statistics JSON since the last asked for, if any.
    fn stats(&self) -> Option<String> {
        let consumer = self.consumer.read().expect("consumer lock");
        consumer
            .as_ref()
            .and_then(|c| c.context().stats.lock().expect("stats lock").take())
    }

    /// librdkafka's log lines of level warning or worse since the last asked for, as
    /// (syslog level, line), and how many more were dropped.
    fn log_lines(&self) -> (Vec<(i32, String)>, usize) {
        let consumer = self.consumer.read().expect("consumer lock");
        consumer
            .as_ref()
            .map_or((Vec::new(), 0), |c| c.context().lines.take())
    }

    /// Leave the partitions and free the consumer; harmless twice.
    fn close(&self, py: Python<'_>) {
        py.detach(|| drop(self.consumer.write().expect("consumer lock").take()));
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<FeedReader>()
}
