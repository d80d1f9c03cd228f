//! Top-N tables: counts per item (virus name, sender, client address, filter
//! rule), ranked on demand. Counts are kept per item, not only for the
//! current top N, so an item that falls out of the top and comes back has
//! its full count. Memory is bounded: past [`MAX_ITEMS`] distinct items, the
//! item with the smallest count is forgotten to make room (documented).

use std::collections::HashMap;

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

#[derive(Debug, Default)]
pub struct Top {
    counts: HashMap<String, u64>,
}

impl Top {
    pub fn add(&mut self, item: &str, n: u64) {
        if let Some(c) = self.counts.get_mut(item) {
            *c += n;
            return;
        }
        if self.counts.len() >= MAX_ITEMS {
            if let Some(smallest) = self
                .counts
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(k, _)| k.clone())
            {
                self.counts.remove(&smallest);
            }
        }
        self.counts.insert(item.to_string(), n);
    }

    /// The first `n` by count (descending), ties broken by item (ascending)
    /// so that the ranking is stable between scrapes.
    pub fn ranked(&self, n: usize) -> Vec<TopEntry> {
        let mut all: Vec<(&String, &u64)> = self.counts.iter().collect();
        all.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        all.into_iter()
            .take(n)
            .enumerate()
            .map(|(i, (item, count))| TopEntry {
                rank: i as u32 + 1,
                item: item.clone(),
                count: *count,
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.counts.clear();
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
}
