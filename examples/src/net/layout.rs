//! Where everything lives in guest memory. One region holds the transmit ring, the receive
//! ring, the grant table and the packet buffers, so that handing the region's memfd (and two
//! eventfds) to a back end in another process is all it takes to connect.

use pvio_grant::{Frame, PAGE_SIZE};
use pvio_ring::{SharedMem, ShmError};

/// Frame of the transmit ring page.
pub const TX_RING_FRAME: u32 = 0;
/// Frame of the receive ring page.
pub const RX_RING_FRAME: u32 = 1;
/// First frame of the grant table.
pub const GNTTAB_FRAME: u32 = 2;
/// Grant table entries (8 bytes each).
pub const GNTTAB_ENTRIES: usize = 1024;
/// Frames the grant table takes.
pub const GNTTAB_FRAMES: u32 = (GNTTAB_ENTRIES * 8 / PAGE_SIZE) as u32;
/// First transmit buffer frame.
pub const TX_FIRST_FRAME: u32 = GNTTAB_FRAME + GNTTAB_FRAMES;
/// Transmit buffer frames (a 64 KiB packet takes 17).
pub const TX_FRAMES: u32 = 512;
/// First receive buffer frame.
pub const RX_FIRST_FRAME: u32 = TX_FIRST_FRAME + TX_FRAMES;
/// Receive buffer frames: one per receive ring slot.
pub const RX_FRAMES: u32 = 256;
/// The region's size: 4 MiB, two huge pages.
pub const REGION_LEN: usize = 1024 * PAGE_SIZE;

const _: () = assert!(((RX_FIRST_FRAME + RX_FRAMES) as usize) * PAGE_SIZE <= REGION_LEN);
const _: () = assert!((TX_FRAMES + RX_FRAMES) as usize + 8 <= GNTTAB_ENTRIES);

fn frame_view<'a>(mem: &SharedMem<'a>, frame: u32, frames: u32) -> Result<SharedMem<'a>, ShmError> {
    mem.slice(Frame(frame).offset() as usize, frames as usize * PAGE_SIZE)
}

/// The transmit ring's page in `mem` (a whole region).
pub fn tx_ring<'a>(mem: &SharedMem<'a>) -> Result<SharedMem<'a>, ShmError> {
    frame_view(mem, TX_RING_FRAME, 1)
}

/// The receive ring's page.
pub fn rx_ring<'a>(mem: &SharedMem<'a>) -> Result<SharedMem<'a>, ShmError> {
    frame_view(mem, RX_RING_FRAME, 1)
}

/// The grant table's pages.
pub fn gnttab<'a>(mem: &SharedMem<'a>) -> Result<SharedMem<'a>, ShmError> {
    frame_view(mem, GNTTAB_FRAME, GNTTAB_FRAMES)
}
