//! A feed's batch of delivery reports read, located and folded without a Python
//! object per report (`streams.aggregate.delivery` uses it when it is installed).
//!
//! `ReportBatch(values, keys, partitions, offsets)` reads each record as
//! `streams.aggregate.reports.fast_report` does (`delivery_fold::read_report`),
//! keeps those keyed by their job id, and groups them by (partition, job id).
//! Python loads each group's job once and tells `locate` what it knows of it;
//! a group whose every report carries its message's position as one of that
//! job's (`message_ids::JobDigests::carried`), and needs nothing else looked
//! up, is then folded here from its records (`fold`), byte for byte as
//! `fold_codec.fold_encoded` folds the same `Reported` tuples.
//!
//! Anything else stays Python's, whole: a record this code did not read
//! (`unread`: no value, not what `fast_report` takes, a key that is not the job
//! id), and every record of a group `locate` did not vouch for (an unknown
//! job, another tenant's, a job that has sent nothing, a message id without
//! its position, a user the fan-out failed). `reports` gives those their
//! `Report`. tests/streams/aggregate/test_report_batch.py keeps the two ways
//! equal.

use std::collections::{HashMap, HashSet};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::delivery_fold::{self, block_of, read_report, EncodedTuple, First, Item, WireReport};
use crate::event_producer::EventProducer;
use crate::message_ids::JobDigests;

/// What Python knows of a group's job, when its reports may be located here:
/// (the prefix of its message ids, users received, tenant, the positions of the users
/// the fan-out failed).
type JobFacts = (String, i64, String, Vec<i64>);

/// A record's value and key, borrowed from their Python bytes.
type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

#[pyclass(module = "bulkstream_native")]
pub struct ReportBatch {
    /// Each record read (its state's rank and the report), or None: Python's.
    reports: Vec<Option<(u8, WireReport)>>,
    offsets: Vec<i64>,
    /// (partition, job id) of each group, in the order of their first record.
    groups: Vec<(i64, String)>,
    /// Each group's records, in offset order.
    members: Vec<Vec<usize>>,
    unread: Vec<usize>,
    /// Each record's position once its group is located (-1 before, or in no group).
    positions: Vec<i64>,
    /// Whether each group was located (`locate`): only those are folded here.
    located: Vec<bool>,
}

impl ReportBatch {
    /// A located group's records.
    fn located_members(&self, group: usize) -> PyResult<&Vec<usize>> {
        let members = self.members.get(group).ok_or_else(no_group)?;
        if !self.located[group] {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "the group was not located",
            ));
        }
        Ok(members)
    }

    fn items(&self, group: usize) -> PyResult<Vec<Item>> {
        let members = self.located_members(group)?;
        let positions = &self.positions;
        Ok(members
            .iter()
            .map(|&n| {
                let (rank, report) = self.reports[n].as_ref().expect("a member is read");
                Item {
                    offset: self.offsets[n],
                    position: positions[n],
                    message_id: report.message_id.clone(),
                    rank: *rank,
                    first: First(report.at, report.reason.clone(), report.provider.clone()),
                }
            })
            .collect())
    }
}

fn no_group() -> PyErr {
    pyo3::exceptions::PyIndexError::new_err("no such group")
}

fn no_record() -> PyErr {
    pyo3::exceptions::PyIndexError::new_err("no such record")
}

/// Whether every report of a group carries its message's position as one of this
/// job's, in a tenant it may name, of a user the fan-out sent to: each record's
/// position then, else None.
fn located(reports: &[&WireReport], facts: &JobFacts) -> Option<Vec<i64>> {
    let (prefix, received, tenant, failed) = facts;
    let failed: HashSet<i64> = failed.iter().copied().collect();
    let mut digests = None; // a group's reports are one job's: made once
    reports
        .iter()
        .map(|report| {
            let id = &report.message_id;
            let fits = report.tenant.as_ref().map_or(true, |t| t == tenant)
                && id.is_ascii()
                && id.len() == prefix.len() + 24
                && id.starts_with(prefix.as_str());
            let position = if fits {
                JobDigests::for_job(&mut digests, &report.job_id).carried(id)
            } else {
                -1
            };
            ((0..*received).contains(&position) && !failed.contains(&position)).then_some(position)
        })
        .collect()
}

#[pymethods]
impl ReportBatch {
    #[new]
    fn new(
        py: Python<'_>,
        values: Vec<Option<Bound<'_, PyBytes>>>,
        keys: Vec<Option<Bound<'_, PyBytes>>>,
        partitions: Vec<i64>,
        offsets: Vec<i64>,
    ) -> PyResult<Self> {
        let n = values.len();
        if keys.len() != n || partitions.len() != n || offsets.len() != n {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "values, keys, partitions and offsets differ in length",
            ));
        }
        // Borrowed, not copied: bytes are immutable, and the lists keep them alive.
        let raw: Vec<Record<'_>> = values
            .iter()
            .zip(&keys)
            .map(|(v, k)| {
                (
                    v.as_ref().map(|v| v.as_bytes()),
                    k.as_ref().map(|k| k.as_bytes()),
                )
            })
            .collect();
        let reports: Vec<Option<(u8, WireReport)>> = py.detach(|| {
            raw.iter()
                .map(|(value, key)| {
                    let read = value.and_then(read_report)?;
                    // `parse_report` compares the key decoded with the job id.
                    (*key == Some(read.1.job_id.as_bytes())).then_some(read)
                })
                .collect()
        });
        let mut groups: Vec<(i64, String)> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut index: HashMap<(i64, &str), usize> = HashMap::new();
        let mut last: Option<((i64, &str), usize)> = None;
        let mut unread = Vec::new();
        for (n, read) in reports.iter().enumerate() {
            let Some((_, report)) = read else {
                unread.push(n);
                continue;
            };
            let at = (partitions[n], report.job_id.as_str());
            // A batch's reports mostly come in runs of one job's: hash on a change only.
            let group = match last {
                Some((key, group)) if key == at => group,
                _ => *index.entry(at).or_insert_with(|| {
                    groups.push((partitions[n], report.job_id.clone()));
                    members.push(Vec::new());
                    groups.len() - 1
                }),
            };
            last = Some((at, group));
            members[group].push(n);
        }
        drop(index);
        Ok(ReportBatch {
            reports,
            offsets,
            located: vec![false; groups.len()],
            groups,
            members,
            unread,
            positions: vec![-1; n],
        })
    }

    /// (partition, job id) of each group of records read here.
    #[getter]
    fn groups(&self) -> Vec<(i64, String)> {
        self.groups.clone()
    }

    /// The records this code did not read, in order: Python reads them.
    #[getter]
    fn unread(&self) -> Vec<usize> {
        self.unread.clone()
    }

    /// A group's records (indexes in the batch), in offset order.
    fn members(&self, group: usize) -> PyResult<Vec<usize>> {
        self.members.get(group).cloned().ok_or_else(no_group)
    }

    /// A group's first record (its index in the batch).
    fn first(&self, group: usize) -> PyResult<usize> {
        let members = self.members.get(group).ok_or_else(no_group)?;
        Ok(members[0])
    }

    /// How many records a group holds.
    fn count(&self, group: usize) -> PyResult<usize> {
        Ok(self.members.get(group).ok_or_else(no_group)?.len())
    }

    /// For each group, what Python knows of its job (`JobFacts`), or None: leave it to
    /// Python. Answers, for each group, whether every one of its reports was located
    /// (then `fold` folds it); a group not located is Python's, whole.
    fn locate(&mut self, py: Python<'_>, jobs: Vec<Option<JobFacts>>) -> PyResult<Vec<bool>> {
        if jobs.len() != self.groups.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "one job's facts (or None) a group",
            ));
        }
        let (reports, members, positions) = (&self.reports, &self.members, &mut self.positions);
        let located: Vec<bool> = py.detach(|| {
            jobs.iter()
                .zip(members)
                .map(|(facts, members)| {
                    let Some(facts) = facts else { return false };
                    let reports: Vec<&WireReport> = members
                        .iter()
                        .map(|&n| &reports[n].as_ref().expect("a member is read").1)
                        .collect();
                    let Some(found) = located(&reports, facts) else {
                        return false;
                    };
                    for (&n, position) in members.iter().zip(found) {
                        positions[n] = position;
                    }
                    true
                })
                .collect()
        });
        self.located.clone_from(&located);
        Ok(located)
    }

    /// The `Report` (`make(messageId, jobId, states[rank], at, reason, provider,
    /// tenant)`) of each record asked for, or None for one this code did not read.
    fn reports<'py>(
        &self,
        py: Python<'py>,
        indexes: Vec<usize>,
        make: &Bound<'py, PyAny>,
        states: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for n in indexes {
            match self.reports.get(n).ok_or_else(no_record)? {
                None => out.append(py.None())?,
                Some((rank, r)) => out.append(make.call1((
                    &r.message_id,
                    &r.job_id,
                    &states[*rank as usize],
                    r.at,
                    &r.reason,
                    &r.provider,
                    &r.tenant,
                ))?)?,
            }
        }
        Ok(out)
    }

    /// A located group's (offset, position) of each record, in offset order.
    fn located(&self, group: usize) -> PyResult<Vec<(i64, i64)>> {
        let members = self.located_members(group)?;
        let positions = &self.positions;
        Ok(members
            .iter()
            .map(|&n| (self.offsets[n], positions[n]))
            .collect())
    }

    /// The numbers of the blocks of message states a located group's reports fall in,
    /// sorted.
    fn block_numbers(&self, group: usize) -> PyResult<Vec<i64>> {
        let members = self.located_members(group)?;
        let positions = &self.positions;
        let mut numbers: Vec<i64> = members.iter().map(|&n| block_of(positions[n])).collect();
        numbers.sort_unstable();
        numbers.dedup();
        Ok(numbers)
    }

    /// A located group folded from the stored summary and blocks, as
    /// `bulkstream_native.fold_reports` folds the same `Reported` tuples (None: a
    /// stored record is not what `fold_encoded` writes; fold it in Python); the
    /// entries grouped by bucket of the views, `bucket` positions each
    /// (`streams.views.delivery.bucket_fields`). With `events_to` (a producer and a
    /// topic), the message events are queued there under the job's id, waiting for
    /// room if need be, and the events answered are none.
    #[pyo3(signature = (group, summary, blocks, tenant, bucket, events_to=None))]
    #[allow(clippy::too_many_arguments)]
    fn fold<'py>(
        &self,
        py: Python<'py>,
        group: usize,
        summary: Option<&[u8]>,
        blocks: HashMap<i64, Option<Bound<'py, PyBytes>>>,
        tenant: &str,
        bucket: i64,
        events_to: Option<(Bound<'py, EventProducer>, String)>,
    ) -> PyResult<Option<EncodedTuple<'py>>> {
        if bucket <= 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "a bucket holds positions",
            ));
        }
        let items = self.items(group)?;
        let job_id = &self.groups[group].1;
        let raw_blocks: HashMap<i64, Option<&[u8]>> = blocks
            .iter()
            .map(|(n, block)| (*n, block.as_ref().map(|b| b.as_bytes())))
            .collect();
        let events_to = events_to
            .as_ref()
            .map(|(producer, topic)| (producer.get(), topic));
        let folded = py.detach(|| -> PyResult<_> {
            let Some(mut folded) =
                delivery_fold::fold(summary, &items, &raw_blocks, job_id, tenant)
            else {
                return Ok(None);
            };
            if let Some((producer, topic)) = events_to {
                let events = std::mem::take(&mut folded.events);
                producer.queue(
                    topic,
                    Some(job_id.as_bytes()),
                    events.iter().map(Vec::as_slice),
                    true,
                )?;
            }
            Ok(Some(folded))
        })?;
        let Some(folded) = folded else {
            return Ok(None);
        };
        delivery_fold::encoded(py, &folded, &items, Some(bucket)).map(Some)
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ReportBatch>()
}
