//! The delivery fold's producer of message events, natively: librdkafka (the
//! `rdkafka` crate, the same build as the feed reader's) queueing a batch of records
//! under one key with the GIL released, failures only reported back.
//!
//! confluent-kafka's `produce` is one Python call a record: a third of a
//! microsecond of the event loop's thread for each message event, a report. Here
//! `ReportBatch.fold` queues a located group's events itself, on the fold's thread,
//! without making them Python objects, and `send` queues the events a Python fold
//! made. As with `streams.kafka.producer.BatchProducer`, librdkafka reports the
//! records that failed only (`delivery.report.only.error`); `flush` waits for the
//! queue to empty and serves those reports, which `failures` then gives.
//!
//! `streams.kafka.native_producer` wraps it; tests/streams/test_event_producer_native.py
//! checks it against a real broker.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rdkafka::bindings;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use crate::feed_reader::LogLines;

/// How long a producer whose queue is full waits for room before trying again.
const ROOM_WAIT: Duration = Duration::from_millis(5);
/// The longest wait of `drain` between two servings of the failures' reports.
const FLUSH_SLICE: Duration = Duration::from_millis(10);

/// `<topic>/<partition>: <error>` of each record that failed, in order: kept by the
/// producer's context and by the `EventProducer`, which still answers once closed.
type Failures = Arc<Mutex<Vec<String>>>;

/// What librdkafka reports outside the queue: failed records and its log.
struct Sent {
    failures: Failures,
    lines: LogLines,
}

impl ClientContext for Sent {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.lines.keep(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.lines.keep(
            RDKafkaLogLevel::Error,
            "ERROR",
            &format!("{error}: {reason}"),
        );
    }
}

impl ProducerContext for Sent {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, record)) = result {
            let failure = format!("{}/{}: {error}", record.topic(), record.partition());
            self.failures.lock().expect("failures lock").push(failure);
        }
    }
}

/// Wait up to `wait` for every record queued to be taken or to fail, serving the
/// failures' reports; the number of records still queued.
///
/// Not the crate's `flush`: between two looks at librdkafka's count it polls the
/// producer's queue for the whole of 100 ms, where no event comes (the records that
/// land have none), so an acknowledgement came up to 100 ms late. librdkafka's own
/// flush wakes as the count reaches zero; a failed record holds the count until its
/// report is served, so the wait goes by slices, serving the reports between them.
fn drain(producer: &BaseProducer<Sent>, wait: Duration) -> usize {
    let until = Instant::now() + wait;
    loop {
        producer.poll(Duration::ZERO); // one event: the reports of some failed records
        let left = usize::try_from(producer.in_flight_count()).unwrap_or(0);
        let remaining = until.saturating_duration_since(Instant::now());
        if left == 0 || remaining.is_zero() {
            return left;
        }
        let slice = i32::try_from(remaining.min(FLUSH_SLICE).as_millis()).unwrap_or(1);
        // SAFETY: the producer's handle is valid while `producer` is borrowed.
        unsafe { bindings::rd_kafka_flush(producer.client().native_ptr(), slice.max(1)) };
    }
}

fn kafka_error(error: KafkaError) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(format!("librdkafka: {error}"))
}

fn closed() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("the producer is closed")
}

#[pyclass(module = "bulkstream_native", frozen)]
pub struct EventProducer {
    /// None once closed. Shared by every call but `close`: librdkafka takes records
    /// from any thread (the fold's and the event loop's).
    producer: RwLock<Option<BaseProducer<Sent>>>,
    /// Set by `close`: a queue waiting for room gives up.
    closing: AtomicBool,
    /// The records `close` left undelivered (`__len__` once closed).
    left: AtomicUsize,
    /// The producer's failed records, the same list its context fills.
    failures: Failures,
}

impl EventProducer {
    fn with<T>(&self, call: impl FnOnce(&BaseProducer<Sent>) -> PyResult<T>) -> PyResult<T> {
        let producer = self.producer.read().expect("producer lock");
        call(producer.as_ref().ok_or_else(closed)?)
    }

    /// Queue a record of each value under `key`, from the first, while the queue has
    /// room; how many were queued. With `wait`, a full queue is waited out instead.
    pub(crate) fn queue<'v>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        values: impl IntoIterator<Item = &'v [u8]>,
        wait: bool,
    ) -> PyResult<usize> {
        self.with(|producer| {
            let mut queued = 0;
            for value in values {
                let mut record = BaseRecord::to(topic).payload(value);
                if let Some(key) = key {
                    record = record.key(key);
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                            if wait =>
                        {
                            if self.closing.load(Ordering::Relaxed) {
                                return Err(closed());
                            }
                            producer.poll(ROOM_WAIT);
                            record = back;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                            return Ok(queued)
                        }
                        Err((error, _)) => return Err(kafka_error(error)),
                    }
                }
                queued += 1;
            }
            Ok(queued)
        })
    }
}

#[pymethods]
impl EventProducer {
    /// A producer made with librdkafka's properties `config` (which should ask for
    /// failures only: `delivery.report.only.error`).
    #[new]
    fn new(config: Vec<(String, String)>) -> PyResult<Self> {
        let mut client = ClientConfig::new();
        for (name, value) in config {
            client.set(name, value);
        }
        client.set_log_level(RDKafkaLogLevel::Warning);
        let failures = Failures::default();
        let context = Sent {
            failures: Arc::clone(&failures),
            lines: LogLines::default(),
        };
        let producer: BaseProducer<Sent> =
            client.create_with_context(context).map_err(kafka_error)?;
        Ok(EventProducer {
            producer: RwLock::new(Some(producer)),
            closing: AtomicBool::new(false),
            left: AtomicUsize::new(0),
            failures,
        })
    }

    /// Queue a record of each of `values[start:]` under `key`, while the queue has
    /// room; the index reached (`len(values)`: all queued). Never waits.
    fn send(
        &self,
        py: Python<'_>,
        topic: &str,
        key: Option<&[u8]>,
        values: Vec<Bound<'_, PyBytes>>,
        start: usize,
    ) -> PyResult<usize> {
        let slices: Vec<&[u8]> = values.iter().skip(start).map(|v| v.as_bytes()).collect();
        let queued = py.detach(|| self.queue(topic, key, slices, false))?;
        Ok(start + queued)
    }

    /// Wait up to `timeout` seconds for every record queued to be taken or to fail,
    /// serving the failures' reports; the number of records still queued (once closed,
    /// those `close` left, at once: an acknowledgement awaited meanwhile then fails).
    fn flush(&self, py: Python<'_>, timeout: f64) -> usize {
        let wait = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::ZERO);
        py.detach(|| {
            let producer = self.producer.read().expect("producer lock");
            match producer.as_ref() {
                Some(producer) => drain(producer, wait),
                None => self.left.load(Ordering::Relaxed),
            }
        })
    }

    /// Records queued and not yet taken or failed; once closed, those it left.
    fn __len__(&self) -> usize {
        let producer = self.producer.read().expect("producer lock");
        match producer.as_ref() {
            Some(producer) => usize::try_from(producer.in_flight_count()).unwrap_or(0),
            None => self.left.load(Ordering::Relaxed),
        }
    }

    /// How many records have failed so far (closed or not).
    fn failed(&self) -> usize {
        self.failures.lock().expect("failures lock").len()
    }

    /// The failures reported since the first `start` (`<topic>/<partition>: <error>`).
    fn failures(&self, start: usize) -> Vec<String> {
        let failures = self.failures.lock().expect("failures lock");
        failures
            .get(start..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// librdkafka's log lines of level warning or worse since the last asked for, as
    /// (syslog level, line), and how many more were dropped.
    fn log_lines(&self) -> (Vec<(i32, String)>, usize) {
        let producer = self.producer.read().expect("producer lock");
        producer
            .as_ref()
            .map_or((Vec::new(), 0), |p| p.context().lines.take())
    }

    /// Flush for up to `timeout` seconds, then free the producer (what it still held
    /// is lost); the number of records it still held. Harmless twice.
    fn close(&self, py: Python<'_>, timeout: f64) -> usize {
        self.closing.store(true, Ordering::Relaxed);
        let wait = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::ZERO);
        py.detach(|| {
            let Some(producer) = self.producer.write().expect("producer lock").take() else {
                return 0;
            };
            let left = drain(&producer, wait);
            self.left.store(left, Ordering::Relaxed);
            left
        })
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<EventProducer>()
}
