//! Where the mapper gets frames for new tables and returns freed ones.

use crate::size::PhysFrame;

/// Supplies zeroable 4 KiB frames for page tables and takes back tables the mapper frees.
pub trait FrameAllocator {
    /// A free frame, or `None` when exhausted (the operation then fails with
    /// [`crate::MapError::OutOfFrames`]).
    fn allocate_frame(&mut self) -> Option<PhysFrame>;
    /// A table frame the mapper no longer uses (after a promotion or when a table emptied).
    fn deallocate_frame(&mut self, frame: PhysFrame);
}

impl<A: FrameAllocator + ?Sized> FrameAllocator for &mut A {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        (**self).allocate_frame()
    }
    fn deallocate_frame(&mut self, frame: PhysFrame) {
        (**self).deallocate_frame(frame)
    }
}

/// Frames from a physical range, freed frames reused first (needs `alloc` for the free list).
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct RangeFrameAllocator {
    next: u64,
    end: u64,
    free: alloc::vec::Vec<PhysFrame>,
    in_use: usize,
}

#[cfg(feature = "alloc")]
impl RangeFrameAllocator {
    /// Frames in `[start, end)` (rounded inwards to 4 KiB).
    pub fn new(start: crate::PhysAddr, end: crate::PhysAddr) -> Self {
        RangeFrameAllocator {
            next: (start.as_u64() + 0xfff) & !0xfff,
            end: end.as_u64() & !0xfff,
            free: alloc::vec::Vec::new(),
            in_use: 0,
        }
    }

    /// Frames handed out and not yet returned.
    pub fn in_use(&self) -> usize {
        self.in_use
    }
}

#[cfg(feature = "alloc")]
impl FrameAllocator for RangeFrameAllocator {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let f = match self.free.pop() {
            Some(f) => f,
            None if self.next < self.end => {
                let f = PhysFrame::containing_address(crate::PhysAddr::new_masked(self.next));
                self.next += 4096;
                f
            }
            None => return None,
        };
        self.in_use += 1;
        Some(f)
    }

    fn deallocate_frame(&mut self, frame: PhysFrame) {
        self.in_use = self.in_use.saturating_sub(1);
        self.free.push(frame);
    }
}
