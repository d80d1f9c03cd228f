//! What the subagent serves: the `OidView` trait ("value at this OID",
//! "first OID after this one within this range") and `MibView`, a ready,
//! immutable implementation over an ordered map. The owner of the data
//! (the daemon) builds a new `MibView` when its numbers change and hands
//! the subagent a provider that returns the current one; the subagent
//! never waits for anything while answering. This module knows nothing
//! about AgentX framing or sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use crate::oid::Oid;
use crate::value::Value;

/// A read-only view of a MIB, answered synchronously.
///
/// Implementations must be cheap (microseconds): a net-snmp master gives a
/// subagent one second (`agentXTimeout`) for a whole request.
pub trait OidView: Send + Sync {
    /// The value at exactly `oid`: a value, `NoSuchInstance` when `oid` is
    /// under a known object but not an instance of it, or `NoSuchObject`.
    fn get(&self, oid: &Oid) -> Value;

    /// The first variable after `start` (or at `start` when `include`)
    /// and before `end` (`None` or the null OID: no bound), with its value.
    fn next(&self, start: &Oid, include: bool, end: Option<&Oid>) -> Option<(Oid, Value)>;
}

/// Hands the subagent the current view; called once per request, so it
/// must be cheap (typically a clone of an `Arc` held behind a lock or an
/// `ArcSwap`).
pub type ViewProvider = Arc<dyn Fn() -> Arc<dyn OidView> + Send + Sync>;

/// A provider that always returns the same view.
pub fn fixed_view(view: impl OidView + 'static) -> ViewProvider {
    let view: Arc<dyn OidView> = Arc::new(view);
    Arc::new(move || Arc::clone(&view))
}

/// An immutable view over an ordered map of values, plus the OIDs of the
/// declared objects (scalars and table columns) so that a Get can tell
/// `noSuchInstance` (a known object, not this instance) from
/// `noSuchObject`.
#[derive(Clone, Debug, Default)]
pub struct MibView {
    /// Every instance and its value, in SNMP order.
    values: BTreeMap<Oid, Value>,
    /// The OIDs of the declared objects (scalar or column OIDs, without
    /// instance suffix).
    objects: BTreeSet<Oid>,
}

impl MibView {
    /// A view over `values`, with `objects` as the declared object OIDs.
    pub fn new(values: BTreeMap<Oid, Value>, objects: impl IntoIterator<Item = Oid>) -> MibView {
        MibView {
            values,
            objects: objects.into_iter().collect(),
        }
    }

    /// A builder.
    pub fn builder() -> MibViewBuilder {
        MibViewBuilder::default()
    }

    /// The number of instances.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the view has no instance.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// All instances in SNMP order.
    pub fn iter(&self) -> impl Iterator<Item = (&Oid, &Value)> {
        self.values.iter()
    }

    /// Whether `oid` is a declared object or under one.
    fn under_object(&self, oid: &Oid) -> bool {
        let s = oid.as_slice();
        (0..=s.len()).any(|n| self.objects.contains(&s[..n]))
    }
}

impl OidView for MibView {
    fn get(&self, oid: &Oid) -> Value {
        match self.values.get(oid) {
            Some(v) => v.clone(),
            None if self.under_object(oid) => Value::NoSuchInstance,
            None => Value::NoSuchObject,
        }
    }

    fn next(&self, start: &Oid, include: bool, end: Option<&Oid>) -> Option<(Oid, Value)> {
        let lower = if include {
            Bound::Included(start.as_slice())
        } else {
            Bound::Excluded(start.as_slice())
        };
        let (oid, value) = self
            .values
            .range::<[u32], _>((lower, Bound::Unbounded))
            .next()?;
        match end {
            Some(end) if !end.is_empty() && oid >= end => None,
            _ => Some((oid.clone(), value.clone())),
        }
    }
}

/// Builds a [`MibView`].
#[derive(Clone, Debug, Default)]
pub struct MibViewBuilder {
    /// The instances so far.
    values: BTreeMap<Oid, Value>,
    /// The declared objects so far.
    objects: BTreeSet<Oid>,
}

impl MibViewBuilder {
    /// Declares an object (a scalar or a table column OID).
    pub fn object(&mut self, oid: Oid) -> &mut Self {
        self.objects.insert(oid);
        self
    }

    /// Sets the value of an instance (replacing any earlier one).
    pub fn insert(&mut self, oid: Oid, value: Value) -> &mut Self {
        self.values.insert(oid, value);
        self
    }

    /// Declares a scalar object and sets its instance `object.0`.
    pub fn scalar(&mut self, object: Oid, value: Value) -> &mut Self {
        self.values.insert(object.child(0), value);
        self.objects.insert(object);
        self
    }

    /// The finished view.
    pub fn build(&mut self) -> MibView {
        MibView {
            values: std::mem::take(&mut self.values),
            objects: std::mem::take(&mut self.objects),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(s: &str) -> Oid {
        s.parse().unwrap()
    }

    fn view() -> MibView {
        let mut b = MibView::builder();
        b.scalar(oid("1.3.6.1.4.1.32473.25.1.1.1"), Value::Integer(7));
        b.scalar(oid("1.3.6.1.4.1.32473.25.1.1.2"), Value::string("x"));
        b.object(oid("1.3.6.1.4.1.32473.25.1.2.1.1"));
        for row in 1..=3 {
            b.insert(
                oid("1.3.6.1.4.1.32473.25.1.2.1.1").child(row),
                Value::Counter64(u64::from(row)),
            );
        }
        b.build()
    }

    #[test]
    fn get_tells_instance_from_object() {
        let v = view();
        assert_eq!(
            v.get(&oid("1.3.6.1.4.1.32473.25.1.1.1.0")),
            Value::Integer(7)
        );
        assert_eq!(
            v.get(&oid("1.3.6.1.4.1.32473.25.1.1.1.1")),
            Value::NoSuchInstance
        );
        assert_eq!(
            v.get(&oid("1.3.6.1.4.1.32473.25.1.2.1.1.9")),
            Value::NoSuchInstance
        );
        assert_eq!(
            v.get(&oid("1.3.6.1.4.1.32473.25.1.2.1.1")),
            Value::NoSuchInstance
        );
        assert_eq!(
            v.get(&oid("1.3.6.1.4.1.32473.25.1.2.1.2.1")),
            Value::NoSuchObject
        );
        assert_eq!(v.get(&oid("1.3.6.1.4.1.32473.25.1.1")), Value::NoSuchObject);
        assert_eq!(v.get(&oid("1.3.6.1.4.1.32473.25")), Value::NoSuchObject);
    }

    #[test]
    fn next_honours_include_and_end() {
        let v = view();
        let first = v.next(&oid("1.3.6.1.4.1.32473.25"), false, None).unwrap();
        assert_eq!(first.0, oid("1.3.6.1.4.1.32473.25.1.1.1.0"));
        let same = v
            .next(&oid("1.3.6.1.4.1.32473.25.1.1.1.0"), true, None)
            .unwrap();
        assert_eq!(same.0, oid("1.3.6.1.4.1.32473.25.1.1.1.0"));
        let after = v
            .next(&oid("1.3.6.1.4.1.32473.25.1.1.1.0"), false, None)
            .unwrap();
        assert_eq!(after.0, oid("1.3.6.1.4.1.32473.25.1.1.2.0"));
        // The end is exclusive.
        let end = oid("1.3.6.1.4.1.32473.25.1.2.1.1.2");
        let r = v.next(&oid("1.3.6.1.4.1.32473.25.1.2.1.1.1"), true, Some(&end));
        assert_eq!(r.unwrap().0, oid("1.3.6.1.4.1.32473.25.1.2.1.1.1"));
        assert_eq!(
            v.next(&oid("1.3.6.1.4.1.32473.25.1.2.1.1.1"), false, Some(&end)),
            None
        );
        // A null end is unbounded.
        let r = v.next(
            &oid("1.3.6.1.4.1.32473.25.1.2.1.1.1"),
            false,
            Some(&Oid::null()),
        );
        assert_eq!(r.unwrap().0, oid("1.3.6.1.4.1.32473.25.1.2.1.1.2"));
        assert_eq!(
            v.next(&oid("1.3.6.1.4.1.32473.25.1.2.1.1.3"), false, None),
            None
        );
        assert_eq!(v.next(&oid("1.3.6.1.4.1.32473.26"), true, None), None);
    }
}
