//! Answers the master's requests from a view, per RFC 2741 section 7.2:
//! Get, GetNext and GetBulk from the view, every Set phase refused
//! (the view is read-only), a non-default context refused. Pure functions
//! from a request to a response; no I/O, no waiting, no logging.

use crate::oid::Oid;
use crate::pdu::{ErrorStatus, Get, GetBulk, Payload, Pdu, Response, SearchRange};
use crate::value::{Value, VarBind};
use crate::view::OidView;
use crate::wire::varbind_len;

/// A GetBulk answer stops repeating once it is this big (RFC 2741
/// 7.2.3.3 allows stopping at "an implementation-specific constraint").
/// net-snmp sends GetNext for SNMP GETBULK anyway; this bounds other
/// masters' requests.
pub(crate) const BULK_RESPONSE_BUDGET: usize = 64 * 1024;

/// The response (RFC 2741 section 7.2.2) to a request PDU from the
/// master; `None` when none is due (CleanupSet).
pub(crate) fn answer(view: &dyn OidView, session_id: u32, request: &Pdu) -> Option<Response> {
    if request.session_id != session_id {
        return Some(error(ErrorStatus::NOT_OPEN, 0));
    }
    if request.payload.context().is_some() {
        return Some(error(ErrorStatus::UNSUPPORTED_CONTEXT, 0));
    }
    Some(match &request.payload {
        Payload::Get(get) => ok(get_all(view, get)),
        Payload::GetNext(get) => ok(get_next_all(view, get)),
        Payload::GetBulk(bulk) => ok(get_bulk(view, bulk)),
        // Nothing here is writable: refuse at the first VarBind.
        Payload::TestSet(set) if set.varbinds.is_empty() => ok(Vec::new()),
        Payload::TestSet(_) => error(ErrorStatus::NOT_WRITABLE, 1),
        // A CommitSet can only follow a TestSet we accepted, and we accept
        // none: there is nothing to commit.
        Payload::CommitSet => error(ErrorStatus::COMMIT_FAILED, 0),
        // Nothing was committed, so nothing to undo.
        Payload::UndoSet => ok(Vec::new()),
        // "No response is sent by the subagent" (7.2.4.4).
        Payload::CleanupSet => return None,
        Payload::Ping(_) => ok(Vec::new()),
        _ => error(ErrorStatus::PROCESSING_ERROR, 0),
    })
}

fn ok(varbinds: Vec<VarBind>) -> Response {
    Response {
        sys_uptime: 0,
        error: ErrorStatus::NO_ERROR,
        index: 0,
        varbinds,
    }
}

/// A response with an error and no VarBind.
pub(crate) fn error(status: ErrorStatus, index: u16) -> Response {
    Response {
        sys_uptime: 0,
        error: status,
        index,
        varbinds: Vec::new(),
    }
}

/// Get (7.2.3.1): the value at each starting OID, or an exception.
fn get_all(view: &dyn OidView, get: &Get) -> Vec<VarBind> {
    get.ranges
        .iter()
        .map(|sr| {
            let value = match view.get(&sr.start) {
                // endOfMibView is not an answer to Get.
                Value::EndOfMibView => Value::NoSuchObject,
                v => v,
            };
            VarBind::new(sr.start.clone(), value)
        })
        .collect()
}

/// GetNext (7.2.3.2) for each SearchRange.
fn get_next_all(view: &dyn OidView, get: &Get) -> Vec<VarBind> {
    get.ranges
        .iter()
        .map(
            |sr| match next_in_range(view, &sr.start, sr.include, &sr.end) {
                Some((name, value)) => VarBind::new(name, value),
                None => VarBind::new(sr.start.clone(), Value::EndOfMibView),
            },
        )
        .collect()
}

/// The first variable after `start` (at it when `include`) and before
/// `end` (null: unbounded). Checks what the view returns, so that a
/// faulty view cannot make a walk loop or leave its range, and skips
/// exception values a view might hold.
fn next_in_range(
    view: &dyn OidView,
    start: &Oid,
    include: bool,
    end: &Oid,
) -> Option<(Oid, Value)> {
    let end_bound = if end.is_empty() { None } else { Some(end) };
    let mut from = start.clone();
    let mut include = include;
    loop {
        let (name, value) = view.next(&from, include, end_bound)?;
        let after_start = if include { name >= from } else { name > from };
        if !after_start {
            return None;
        }
        if let Some(end) = end_bound {
            if name >= *end {
                return None;
            }
        }
        if !value.is_exception() {
            return Some((name, value));
        }
        from = name;
        include = false;
    }
}

/// GetBulk (7.2.3.3): the first N ranges as GetNext, then up to M
/// iterations over the other R ranges, stopping early when an iteration
/// is all endOfMibView or the answer reaches [`BULK_RESPONSE_BUDGET`].
fn get_bulk(view: &dyn OidView, bulk: &GetBulk) -> Vec<VarBind> {
    let ranges: &[SearchRange] = &bulk.ranges;
    let n = usize::from(bulk.non_repeaters).min(ranges.len());
    let (non_repeaters, repeaters) = ranges.split_at(n);
    let mut out: Vec<VarBind> = Vec::new();
    let mut size = 0usize;
    for sr in non_repeaters {
        let vb = match next_in_range(view, &sr.start, sr.include, &sr.end) {
            Some((name, value)) => VarBind::new(name, value),
            None => VarBind::new(sr.start.clone(), Value::EndOfMibView),
        };
        size += varbind_len(&vb);
        out.push(vb);
    }
    if repeaters.is_empty() || bulk.max_repetitions == 0 {
        return out;
    }
    // For each repeater: the name of its last VarBind, and whether it has
    // reached endOfMibView.
    let mut cursors: Vec<(Oid, bool)> = repeaters
        .iter()
        .map(|sr| (sr.start.clone(), false))
        .collect();
    for i in 0..bulk.max_repetitions {
        let iteration_start = out.len();
        let mut all_ended = true;
        for (sr, (last, ended)) in repeaters.iter().zip(cursors.iter_mut()) {
            let include = i == 0 && sr.include;
            let found = if *ended {
                None
            } else {
                next_in_range(view, last, include, &sr.end)
            };
            let vb = match found {
                Some((name, value)) => {
                    all_ended = false;
                    *last = name.clone();
                    VarBind::new(name, value)
                }
                None => {
                    *ended = true;
                    VarBind::new(last.clone(), Value::EndOfMibView)
                }
            };
            size += varbind_len(&vb);
            out.push(vb);
        }
        if size > BULK_RESPONSE_BUDGET {
            // Keep whole iterations only (but always the first one).
            if i > 0 {
                out.truncate(iteration_start);
            }
            break;
        }
        if all_ended {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::VarBindPdu;
    use crate::view::MibView;

    fn oid(s: &str) -> Oid {
        s.parse().unwrap()
    }

    /// Scalars .1.0 and .2.0 under 1.9, a column 1.9.3.1.1.{1,2,3}.
    fn view() -> MibView {
        let mut b = MibView::builder();
        b.scalar(oid("1.9.1"), Value::Integer(1));
        b.scalar(oid("1.9.2"), Value::string("two"));
        b.object(oid("1.9.3.1.1"));
        for row in 1..=3u32 {
            b.insert(oid("1.9.3.1.1").child(row), Value::Gauge32(row * 10));
        }
        b.build()
    }

    fn sr(start: &str, include: bool, end: &str) -> SearchRange {
        SearchRange {
            start: oid(start),
            include,
            end: if end.is_empty() {
                Oid::null()
            } else {
                oid(end)
            },
        }
    }

    fn request(payload: Payload) -> Pdu {
        Pdu::new(7, 100, 200, payload)
    }

    fn names(r: &Response) -> Vec<(String, Value)> {
        r.varbinds
            .iter()
            .map(|vb| (vb.name.to_string(), vb.value.clone()))
            .collect()
    }

    #[test]
    fn get_exact_and_exceptions() {
        let req = request(Payload::Get(Get {
            context: None,
            ranges: vec![
                sr("1.9.1.0", false, ""),
                sr("1.9.1.1", false, ""),
                sr("1.8", false, ""),
            ],
        }));
        let r = answer(&view(), 7, &req).unwrap();
        assert_eq!(r.error, ErrorStatus::NO_ERROR);
        assert_eq!(
            names(&r),
            vec![
                ("1.9.1.0".into(), Value::Integer(1)),
                ("1.9.1.1".into(), Value::NoSuchInstance),
                ("1.8".into(), Value::NoSuchObject),
            ]
        );
    }

    #[test]
    fn get_next_honours_include_and_end() {
        let req = request(Payload::GetNext(Get {
            context: None,
            ranges: vec![
                sr("1.9", false, "1.10"),
                sr("1.9.1.0", true, "1.10"),
                sr("1.9.1.0", false, "1.10"),
                sr("1.9.3.1.1.3", false, "1.10"),
                sr("1.9.2.0", false, "1.9.3.1.1.1"),
            ],
        }));
        let r = answer(&view(), 7, &req).unwrap();
        assert_eq!(
            names(&r),
            vec![
                ("1.9.1.0".into(), Value::Integer(1)),
                ("1.9.1.0".into(), Value::Integer(1)),
                ("1.9.2.0".into(), Value::string("two")),
                ("1.9.3.1.1.3".into(), Value::EndOfMibView),
                ("1.9.2.0".into(), Value::EndOfMibView),
            ]
        );
    }

    #[test]
    fn get_bulk_interleaves_repetitions() {
        // N = 1 (1.9.1.0 -> 1.9.2.0), then two repeaters for 3 rounds.
        let req = request(Payload::GetBulk(GetBulk {
            context: None,
            non_repeaters: 1,
            max_repetitions: 3,
            ranges: vec![
                sr("1.9.1.0", false, ""),
                sr("1.9.2.0", true, ""),
                sr("1.9.3.1.1.1", false, "1.9.3.1.1.3"),
            ],
        }));
        let r = answer(&view(), 7, &req).unwrap();
        assert_eq!(
            names(&r),
            vec![
                ("1.9.2.0".into(), Value::string("two")),
                // iteration 1
                ("1.9.2.0".into(), Value::string("two")),
                ("1.9.3.1.1.2".into(), Value::Gauge32(20)),
                // iteration 2: the second repeater reaches its end
                ("1.9.3.1.1.1".into(), Value::Gauge32(10)),
                ("1.9.3.1.1.2".into(), Value::EndOfMibView),
                // iteration 3
                ("1.9.3.1.1.2".into(), Value::Gauge32(20)),
                ("1.9.3.1.1.2".into(), Value::EndOfMibView),
            ]
        );
    }

    #[test]
    fn get_bulk_stops_when_all_repeaters_end() {
        let req = request(Payload::GetBulk(GetBulk {
            context: None,
            non_repeaters: 0,
            max_repetitions: 50,
            ranges: vec![sr("1.9.3.1.1.2", false, "")],
        }));
        let r = answer(&view(), 7, &req).unwrap();
        assert_eq!(
            names(&r),
            vec![
                ("1.9.3.1.1.3".into(), Value::Gauge32(30)),
                ("1.9.3.1.1.3".into(), Value::EndOfMibView),
            ]
        );
    }

    #[test]
    fn get_bulk_edge_counts() {
        // More non-repeaters than ranges; max_repetitions 0.
        let req = request(Payload::GetBulk(GetBulk {
            context: None,
            non_repeaters: 5,
            max_repetitions: 0,
            ranges: vec![sr("1.9.1.0", false, ""), sr("1.9.2.0", false, "")],
        }));
        let r = answer(&view(), 7, &req).unwrap();
        assert_eq!(r.varbinds.len(), 2);
        let req = request(Payload::GetBulk(GetBulk {
            context: None,
            non_repeaters: 0,
            max_repetitions: 0,
            ranges: vec![sr("1.9.1.0", false, "")],
        }));
        assert!(answer(&view(), 7, &req).unwrap().varbinds.is_empty());
    }

    #[test]
    fn get_bulk_respects_the_budget() {
        let mut b = MibView::builder();
        for i in 0..10_000u32 {
            b.insert(oid("1.9").child(i), Value::OctetString(vec![b'x'; 100]));
        }
        let req = request(Payload::GetBulk(GetBulk {
            context: None,
            non_repeaters: 0,
            max_repetitions: u16::MAX,
            ranges: vec![sr("1.9", false, "")],
        }));
        let r = answer(&b.build(), 7, &req).unwrap();
        let size: usize = r.varbinds.iter().map(varbind_len).sum();
        assert!(size <= BULK_RESPONSE_BUDGET, "{size}");
        assert!(r.varbinds.len() > 100);
    }

    #[test]
    fn sets_are_refused_and_contexts_unsupported() {
        let set = request(Payload::TestSet(VarBindPdu {
            context: None,
            varbinds: vec![VarBind::new(oid("1.9.1.0"), Value::Integer(2))],
        }));
        let r = answer(&view(), 7, &set).unwrap();
        assert_eq!((r.error, r.index), (ErrorStatus::NOT_WRITABLE, 1));
        assert_eq!(
            answer(&view(), 7, &request(Payload::CommitSet))
                .unwrap()
                .error,
            ErrorStatus::COMMIT_FAILED
        );
        assert_eq!(
            answer(&view(), 7, &request(Payload::UndoSet))
                .unwrap()
                .error,
            ErrorStatus::NO_ERROR
        );
        assert_eq!(answer(&view(), 7, &request(Payload::CleanupSet)), None);
        let ctx = request(Payload::Get(Get {
            context: Some(b"other".to_vec()),
            ranges: vec![sr("1.9.1.0", false, "")],
        }));
        let r = answer(&view(), 7, &ctx).unwrap();
        assert_eq!(r.error, ErrorStatus::UNSUPPORTED_CONTEXT);
        assert_eq!(r.error.0, 262);
        let wrong_session = answer(&view(), 8, &set).unwrap();
        assert_eq!(wrong_session.error, ErrorStatus::NOT_OPEN);
    }

    /// A view that returns whatever it likes: a walk must still end.
    struct Liar;
    impl OidView for Liar {
        fn get(&self, _: &Oid) -> Value {
            Value::Null
        }
        fn next(&self, start: &Oid, _: bool, _: Option<&Oid>) -> Option<(Oid, Value)> {
            Some((start.clone(), Value::Integer(0)))
        }
    }

    #[test]
    fn a_faulty_view_cannot_loop_a_walk() {
        let req = request(Payload::GetNext(Get {
            context: None,
            ranges: vec![sr("1.9", false, "")],
        }));
        let r = answer(&Liar, 7, &req).unwrap();
        assert_eq!(names(&r), vec![("1.9".into(), Value::EndOfMibView)]);
    }
}
