//! What a page-table change obliges the caller to invalidate.

use core::ops::RangeInclusive;

/// TLB invalidation owed after a change to live page tables. `#[must_use]`: drop it only by
/// calling [`Flush::ignore`] (for tables no CPU is using yet).
///
/// - [`range`](Flush::range): the input addresses whose translations changed (INVLPG each
///   page of it, or INVEPT for an EPT hierarchy). `None` when nothing cached can be stale:
///   x86 and EPT never cache a not-present entry, so mapping fresh pages owes nothing.
/// - [`needs_global_flush`](Flush::needs_global_flush): a GLOBAL mapping changed, so
///   reloading CR3 is **not** enough; use INVLPG on every page, INVPCID type 2, or toggle
///   CR4.PGE.
/// - [`structure_changed`](Flush::structure_changed): a table was freed or replaced (split,
///   promotion, empty table released). The paging-structure caches must forget it before the
///   frame is reused: INVLPG of an address in the range, or a CR3 write, does that.
#[must_use = "the TLB may still hold old translations: act on the Flush or call ignore()"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    range: Option<RangeInclusive<u64>>,
    global: bool,
    structure: bool,
}

impl Flush {
    /// Nothing to invalidate.
    #[inline]
    pub const fn none() -> Self {
        Flush { range: None, global: false, structure: false }
    }

    /// Adds the input addresses `first..=last`.
    #[inline]
    pub(crate) fn add(&mut self, first: u64, last: u64, global: bool) {
        self.range = Some(match self.range.take() {
            None => first..=last,
            Some(r) => (*r.start()).min(first)..=(*r.end()).max(last),
        });
        self.global |= global;
    }

    #[inline]
    pub(crate) fn set_structure(&mut self) {
        self.structure = true;
    }

    /// Merges `other` into `self` (the union range; either's obligations).
    #[inline]
    pub fn merge(&mut self, other: Flush) {
        if let Some(r) = other.range {
            self.add(*r.start(), *r.end(), other.global);
        }
        self.global |= other.global;
        self.structure |= other.structure;
    }

    /// Input addresses (virtual, or guest-physical for EPT) whose translation changed, as one
    /// covering range (first..=last byte); `None` if no cached translation can be stale.
    #[inline]
    pub fn range(&self) -> Option<RangeInclusive<u64>> {
        self.range.clone()
    }

    /// A global mapping changed: a CR3 reload does not remove it from the TLB.
    #[inline]
    pub const fn needs_global_flush(&self) -> bool {
        self.global
    }

    /// Whether reloading CR3 (without PCID preservation) performs everything owed.
    #[inline]
    pub const fn cr3_reload_suffices(&self) -> bool {
        !self.global
    }

    /// A paging-structure (table) was replaced or freed.
    #[inline]
    pub const fn structure_changed(&self) -> bool {
        self.structure
    }

    /// Whether anything must be invalidated.
    #[inline]
    pub const fn is_needed(&self) -> bool {
        self.range.is_some() || self.structure
    }

    /// Drops the obligation: correct only when no CPU can hold the old translations (the
    /// tables are not loaded anywhere yet, or every TLB is flushed anyway).
    #[inline]
    pub fn ignore(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_every_obligation() {
        let mut a = Flush::none();
        assert!(!a.is_needed() && a.cr3_reload_suffices());
        a.add(0x2000, 0x2fff, false);
        let mut b = Flush::none();
        b.add(0x10_0000, 0x1f_ffff, true);
        b.set_structure();
        a.merge(b);
        assert_eq!(a.range(), Some(0x2000..=0x1f_ffff));
        assert!(a.needs_global_flush() && !a.cr3_reload_suffices() && a.structure_changed());
        a.ignore();
    }
}
