//! Top-N tables: counts per item (virus name, sender, client address, filter
//! rule), ranked on demand. Counts are kept per item, not only for the
//! current top N, so an item that falls out of the top and comes back has
//! its full count. Memory is bounded: past [`MAX_ITEMS`] distinct items, the
//! item with the smallest count is forgotten to make room (documented).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Distinct items remembered per table.
pub const MAX_ITEMS: usize = 10_000;

/// One ranked row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopEntry {
    /// 1-based; rows with equal counts get consecutive ranks in item order.
    pub rank: u32,
    pub item: String,
    pub count: u64,
}

/// The counts, and the same items kept in rank order. Both are updated
/// under the model's shared lock on every message, and ranked under its
/// exclusive one on every scrape: with the order kept as items change, an
/// update and a forget cost O(log n) and a ranking O(top n), where a
/// search of all counts cost O(n) per new item (a sender who never sends
/// from the same address twice makes every message new) and a sort
/// O(n log n) per table and scrape, while every session waited.
#[derive(Debug)]
pub struct Top {
    counts: HashMap<Arc<str>, u64>,
    /// Ascending by count, then descending by item: the first is the item
    /// to forget, the last is rank 1.
    order: BTreeSet<(u64, Reverse<Arc<str>>)>,
    cap: usize,
}

impl Default for Top {
    fn default() -> Self {
        Top::with_cap(MAX_ITEMS)
    }
}

impl Top {
    fn with_cap(cap: usize) -> Self {
        Top {
            counts: HashMap::new(),
            order: BTreeSet::new(),
            cap: cap.max(1),
        }
    }

    pub fn add(&mut self, item: &str, n: u64) {
        if let Some((key, &count)) = self.counts.get_key_value(item) {
            let key = key.clone();
            let new = count.saturating_add(n);
            self.order.remove(&(count, Reverse(key.clone())));
            self.order.insert((new, Reverse(key.clone())));
            self.counts.insert(key, new);
            return;
        }
        if self.counts.len() >= self.cap {
            // The smallest count goes; of equal counts, the last by name.
            if let Some((_, Reverse(smallest))) = self.order.pop_first() {
                self.counts.remove(&smallest);
            }
        }
        let key: Arc<str> = Arc::from(item);
        self.order.insert((n, Reverse(key.clone())));
        self.counts.insert(key, n);
    }

    /// The first `n` by count (descending), ties broken by item (ascending)
    /// so that the ranking is stable between scrapes.
    pub fn ranked(&self, n: usize) -> Vec<TopEntry> {
        self.order
            .iter()
            .rev()
            .take(n)
            .enumerate()
            .map(|(i, (count, Reverse(item)))| TopEntry {
                rank: i as u32 + 1,
                item: item.to_string(),
                count: *count,
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.counts.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_rank_by_name_and_items_keep_their_counts_when_they_fall_out() {
        let mut t = Top::default();
        t.add("b", 2);
        t.add("a", 2);
        t.add("c", 1);
        let r = t.ranked(2);
        assert_eq!(
            r.iter()
                .map(|e| (e.rank, e.item.as_str(), e.count))
                .collect::<Vec<_>>(),
            vec![(1, "a", 2), (2, "b", 2)]
        );
        // c is out of the top 2; it comes back with its whole count.
        t.add("c", 2);
        assert_eq!(t.ranked(1)[0].item, "c");
        assert_eq!(t.ranked(1)[0].count, 3);
    }

    /// The ranking and forgetting of the first version (a search of all
    /// counts per new item, a sort per ranking), kept as the reference.
    #[derive(Default)]
    struct Reference(HashMap<String, u64>);

    impl Reference {
        fn add(&mut self, item: &str, n: u64, cap: usize) {
            if let Some(c) = self.0.get_mut(item) {
                *c += n;
                return;
            }
            if self.0.len() >= cap {
                if let Some(smallest) = self
                    .0
                    .iter()
                    .min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                    .map(|(k, _)| k.clone())
                {
                    self.0.remove(&smallest);
                }
            }
            self.0.insert(item.to_string(), n);
        }

        fn ranked(&self, n: usize) -> Vec<(String, u64)> {
            let mut all: Vec<(String, u64)> = self.0.iter().map(|(k, v)| (k.clone(), *v)).collect();
            all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            all.truncate(n);
            all
        }
    }

    #[test]
    fn ranks_and_forgets_exactly_as_a_full_search_and_sort_would() {
        // 20,000 adds of 300 items into 50 places: items are forgotten and
        // come back all the time, with many equal counts.
        let cap = 50;
        let mut top = Top::with_cap(cap);
        let mut reference = Reference::default();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Skewed: low numbers come far more often.
            let item = format!("i{}", (x % 300) * (x % 7) / 6);
            let n = 1 + (x >> 40) % 3;
            top.add(&item, n);
            reference.add(&item, n, cap);
            if round % 997 == 0 || round == 19_999 {
                let got: Vec<(String, u64)> = top
                    .ranked(20)
                    .into_iter()
                    .map(|e| (e.item, e.count))
                    .collect();
                assert_eq!(got, reference.ranked(20), "after {round} adds");
                assert_eq!(top.counts.len(), reference.0.len());
                assert_eq!(top.order.len(), top.counts.len());
            }
        }
        top.clear();
        assert!(top.ranked(5).is_empty());
    }
}
