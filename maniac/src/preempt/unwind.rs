//! Rule 3's library calls: from an interrupted instruction inside a pure library function, the
//! walk up its frames to the task's own code.
//!
//! ## Why
//! Rule 3 (`safepoint`) denies the standard library whole and all code outside the executable,
//! because such code may hold a lock, a thread-local borrow or half-updated state *for its
//! caller*. But a hog's time is often inside library functions that hold nothing: reading the
//! clock (`Instant::elapsed` → `clock_gettime` in libc → the vDSO: a loop that reads the
//! clock every iteration was interrupted there 95 times in 100 and went unpreempted for tens
//! of milliseconds at a 1 ms quantum), sorting, hash-map inserts, formatting into a `String`.
//! What makes a preemption there unsafe is never the pure function itself but a caller that
//! holds something (`std::sync::mpmc` pushing to a `Vec` with its waker lock held). So the
//! handler walks up the stack through pure functions only: if the first frame that is not in
//! one is the task's own code (allowed by rule 3), nothing on the way holds anything the task
//! did not hold itself, and the interrupted instruction is as safe a point as the task's code.
//! If the walk meets a denied or unknown function, an unreadable frame, or goes on too long, it
//! stops, and the request is deferred as before.
//!
//! ## Pure functions
//! In the executable, by demangled name (`safepoint::is_pure`): every path the name mentions,
//! type arguments included, is under `core` or `alloc` (no locks or thread-locals of their
//! own; not `core::panicking` or `alloc::alloc`), `hashbrown`, `std::collections`, std's clock
//! (`std::time` and its Unix implementation) or std's `DefaultHasher`. Outside it, by symbol:
//! libc's `clock_gettime` ([`PURE_LIBC_FUNCTIONS`]) and the vDSO's functions but
//! `getrandom` ([`PURE_VDSO_FUNCTIONS`]), which hold no state at all (the vDSO's read the
//! kernel's time page under a sequence count and retry). libc's other functions stay out,
//! `memcpy` and its kind too: nothing says which of them keep state for their callers.
//!
//! ## Rows
//! At start-up, for the pure functions only, the call-frame information (`.eh_frame`, which every
//! Rust function, glibc and the vDSO carry for unwinding) is evaluated with `gimli` into rows:
//! an address range and how to find the caller's frame from there (the CFA as `rsp` or `rbp`
//! plus an offset, the return address at CFA − 8, where `rbp` was saved). Rows with any other
//! rule (a DWARF expression, a register-to-register rule) are left out: the walk stops there.
//! The handler reads only that sorted, immutable table and the stack.
//!
//! ## The walk (async-signal-safe)
//! From the interrupted `pc`, `rsp`, `rbp`: find the row of `pc` (of `return address − 1` for the
//! callers, which may end a function with a call that does not return); the CFA is its base
//! register plus its offset, and must lie above `rsp` and within the current generator's stack,
//! as must every word read (the return address at CFA − 8, the saved `rbp`); the caller's `rsp`
//! is the CFA. A return address in the task's code ends the walk with a yes.

use std::ops::Range;

use gimli::{CfaRule, CieOrFde, EhFrame, LittleEndian, RegisterRule, UnwindSection, X86_64};

/// libc's functions that hold nothing (module doc). (Its `time` and `gettimeofday` are
/// resolvers of indirect functions, which bind to the vDSO's.)
pub(crate) const PURE_LIBC_FUNCTIONS: &[&str] =
    &["clock_gettime", "__clock_gettime", "__clock_gettime64"];

/// The vDSO's functions that hold nothing (module doc), without their `__vdso_` prefix.
pub(crate) const PURE_VDSO_FUNCTIONS: &[&str] = &[
    "clock_gettime",
    "gettimeofday",
    "time",
    "clock_getres",
    "getcpu",
];

/// The most frames the walk goes up through before it gives up (`Instant::elapsed` to the vDSO
/// is four; a debug build's quicksort recurses, each level a few frames of `core`).
const MOST_FRAMES: usize = 64;

/// How a row finds the caller's frame (module doc, "Rows").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameRow {
    /// The code it covers, `[start, end)` in memory.
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// The CFA is `rbp` (else `rsp`) plus `cfa_offset`.
    pub(crate) cfa_from_rbp: bool,
    pub(crate) cfa_offset: i32,
    /// Where the caller's `rbp` was saved, from the CFA; `None`: `rbp` is the caller's still.
    pub(crate) rbp_saved_at: Option<i32>,
}

/// The registers a frame walk starts from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) pc: usize,
    pub(crate) sp: usize,
    pub(crate) rbp: usize,
}

/// Appends to `rows` the rows of the functions whose code `pure` lists (sorted `[start, end)`
/// ranges in memory) from an object's `.eh_frame` section `eh_frame`, which its own addresses
/// put at `eh_frame_address`, loaded `bias` bytes from them. (Every pointer in the `.eh_frame`
/// of x86_64 code is relative to its own place, so the section's address is the only base.)
pub(crate) fn read_rows(
    eh_frame: &[u8],
    eh_frame_address: u64,
    bias: usize,
    pure: &[(usize, usize)],
    rows: &mut Vec<FrameRow>,
) -> gimli::Result<()> {
    let section = EhFrame::new(eh_frame, LittleEndian);
    let bases = gimli::BaseAddresses::default().set_eh_frame(eh_frame_address);
    let mut context = gimli::UnwindContext::new();
    let mut entries = section.entries(&bases);
    while let Some(entry) = entries.next()? {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let fde = partial.parse(|section, bases, offset| section.cie_from_offset(bases, offset))?;
        let function = bias.wrapping_add(fde.initial_address() as usize);
        // A signal frame's return address is not a call site: the walk's `- 1` would be wrong.
        if fde.cie().is_signal_trampoline() || !super::safepoint::CodeMap::contains(pure, function)
        {
            continue;
        }
        let mut table = fde.rows(&section, &bases, &mut context)?;
        while let Some(row) = table.next_row()? {
            let CfaRule::RegisterAndOffset { register, offset } = *row.cfa() else {
                continue;
            };
            let cfa_from_rbp = match register {
                X86_64::RSP => false,
                X86_64::RBP => true,
                _ => continue,
            };
            if row.register(X86_64::RA) != RegisterRule::Offset(-8) {
                continue;
            }
            let rbp_saved_at = match row.register(X86_64::RBP) {
                RegisterRule::Undefined | RegisterRule::SameValue => None,
                RegisterRule::Offset(at) => match i32::try_from(at) {
                    Ok(at) => Some(at),
                    Err(_) => continue,
                },
                _ => continue,
            };
            let Ok(cfa_offset) = i32::try_from(offset) else {
                continue;
            };
            rows.push(FrameRow {
                start: bias.wrapping_add(row.start_address() as usize),
                end: bias.wrapping_add(row.end_address() as usize),
                cfa_from_rbp,
                cfa_offset,
                rbp_saved_at,
            });
        }
    }
    Ok(())
}

/// Sorts `rows` for [`walks_to_task_code`]. Rows of one object never overlap; should two
/// objects' do, one of them is dropped (the walk must find one rule per address).
pub(crate) fn sort_rows(rows: &mut Vec<FrameRow>) {
    rows.sort_unstable_by_key(|row| row.start);
    let mut end = 0;
    rows.retain(|row| {
        let keep = row.start >= end && row.start < row.end;
        if keep {
            end = row.end;
        }
        keep
    });
}

/// The row of `rows` (sorted) that covers `pc`, if any. Async-signal-safe.
pub(crate) fn row_at(rows: &[FrameRow], pc: usize) -> Option<&FrameRow> {
    let after = rows.partition_point(|row| row.start <= pc);
    rows[..after].last().filter(|row| pc < row.end)
}

/// Reads the word at `address` if it lies in `stack` (`[sp, top)`: the part of the current
/// generator's stack in use). Async-signal-safe.
fn stack_word(stack: &Range<usize>, address: usize) -> Option<usize> {
    let end = address.checked_add(8)?;
    if address < stack.start || end > stack.end {
        return None;
    }
    // SAFETY: the eight bytes lie in the in-use part of the current generator's stack, which is
    // mapped; unaligned, as nothing promises a saved word's alignment to a walk.
    Some(unsafe { (address as *const usize).read_unaligned() })
}

/// The walk (module doc): whether `frame`, interrupted at an instruction `rows` covers, reaches
/// a return address for which `is_task_code` holds, through frames `rows` covers only, all
/// within `stack_top` of the current generator's stack. Async-signal-safe.
pub(crate) fn walks_to_task_code(
    rows: &[FrameRow],
    frame: Frame,
    stack_top: usize,
    is_task_code: impl Fn(usize) -> bool,
) -> bool {
    let Frame {
        pc: mut lookup,
        mut sp,
        mut rbp,
    } = frame;
    for _ in 0..MOST_FRAMES {
        let Some(row) = row_at(rows, lookup) else {
            return false;
        };
        let base = if row.cfa_from_rbp { rbp } else { sp };
        let Some(cfa) = base.checked_add_signed(row.cfa_offset as isize) else {
            return false;
        };
        // The caller's frame lies above this one's, within the stack.
        if cfa <= sp || cfa > stack_top {
            return false;
        }
        let stack = sp..stack_top;
        let Some(return_address) = stack_word(&stack, cfa - 8) else {
            return false;
        };
        if let Some(at) = row.rbp_saved_at {
            let Some(saved) = cfa
                .checked_add_signed(at as isize)
                .and_then(|at| stack_word(&stack, at))
            else {
                return false;
            };
            rbp = saved;
        }
        sp = cfa;
        let Some(call) = return_address.checked_sub(1) else {
            return false;
        };
        if is_task_code(call) {
            return true;
        }
        lookup = call;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack of words, with the address of each, for walks over it.
    struct FakeStack {
        words: Vec<usize>,
    }

    impl FakeStack {
        fn address(&self, index: usize) -> usize {
            self.words.as_ptr() as usize + index * 8
        }
        fn top(&self) -> usize {
            self.address(self.words.len())
        }
    }

    const TASK: Range<usize> = 0x1000..0x2000;
    const PURE_A: (usize, usize) = (0x5000, 0x5100);
    const PURE_B: (usize, usize) = (0x6000, 0x6100);

    fn rsp_row((start, end): (usize, usize), cfa_offset: i32) -> FrameRow {
        FrameRow {
            start,
            end,
            cfa_from_rbp: false,
            cfa_offset,
            rbp_saved_at: None,
        }
    }

    fn is_task(address: usize) -> bool {
        TASK.contains(&address)
    }

    /// A: frame of 24 bytes (CFA = rsp + 24), called from B at 0x6050; B: rbp-based frame (CFA =
    /// rbp + 16, caller's rbp at CFA − 16), called from the task at 0x1234.
    fn two_frames() -> (FakeStack, Vec<FrameRow>, Frame) {
        let mut stack = FakeStack { words: vec![0; 8] };
        // A's frame: words 0..3, return address at word 2 (CFA − 8 = sp + 16).
        stack.words[2] = 0x6050;
        // B's frame from word 3: saved rbp at word 3, return address at word 4.
        stack.words[3] = 0xdead_beef;
        stack.words[4] = 0x1234;
        let rbp = stack.address(3);
        let rows = vec![
            rsp_row(PURE_A, 24),
            FrameRow {
                start: PURE_B.0,
                end: PURE_B.1,
                cfa_from_rbp: true,
                cfa_offset: 16,
                rbp_saved_at: Some(-16),
            },
        ];
        let frame = Frame {
            pc: 0x5010,
            sp: stack.address(0),
            rbp,
        };
        (stack, rows, frame)
    }

    #[test]
    fn a_walk_through_pure_frames_reaches_the_task() {
        let (stack, rows, frame) = two_frames();
        assert!(walks_to_task_code(&rows, frame, stack.top(), is_task));
    }

    #[test]
    fn a_walk_stops_at_a_frame_no_row_covers() {
        let (mut stack, rows, frame) = two_frames();
        // B called from a denied function instead of the task.
        stack.words[4] = 0x9000;
        assert!(!walks_to_task_code(&rows, frame, stack.top(), is_task));
        // The interrupted instruction itself outside every row.
        let (stack, rows, frame) = two_frames();
        let outside = Frame {
            pc: 0x7000,
            ..frame
        };
        assert!(!walks_to_task_code(&rows, outside, stack.top(), is_task));
    }

    #[test]
    fn a_walk_never_reads_outside_the_stack() {
        let (stack, rows, frame) = two_frames();
        // The stack ends below B's return address: the walk must stop, not read beyond.
        assert!(!walks_to_task_code(&rows, frame, stack.address(4), is_task));
        // A CFA at or below the stack pointer (a corrupt rule) stops it too.
        let downwards = vec![rsp_row(PURE_A, 0)];
        assert!(!walks_to_task_code(&downwards, frame, stack.top(), is_task));
        let below = vec![rsp_row(PURE_A, -8)];
        assert!(!walks_to_task_code(&below, frame, stack.top(), is_task));
    }

    /// A function that called itself `depth` times from the task: a stack of its frames (8
    /// bytes each, CFA = rsp + 8), the task's return address above the last.
    fn recursion(depth: usize) -> (FakeStack, Vec<FrameRow>, Frame) {
        let mut stack = FakeStack {
            words: vec![0x5020; depth],
        };
        stack.words.push(0x1234);
        stack.words.push(0);
        let frame = Frame {
            pc: 0x5010,
            sp: stack.address(0),
            rbp: 0,
        };
        (stack, vec![rsp_row(PURE_A, 8)], frame)
    }

    #[test]
    fn a_walk_gives_up_after_its_most_frames() {
        let (stack, rows, frame) = recursion(MOST_FRAMES - 1);
        assert!(walks_to_task_code(&rows, frame, stack.top(), is_task));
        let (stack, rows, frame) = recursion(MOST_FRAMES);
        assert!(!walks_to_task_code(&rows, frame, stack.top(), is_task));
    }

    #[test]
    fn overlapping_rows_keep_one_rule_per_address() {
        let mut rows = vec![
            rsp_row((0x30, 0x40), 8),
            rsp_row((0x10, 0x20), 8),
            rsp_row((0x18, 0x28), 16),
            rsp_row((0x50, 0x50), 8),
        ];
        sort_rows(&mut rows);
        assert_eq!(
            rows,
            vec![rsp_row((0x10, 0x20), 8), rsp_row((0x30, 0x40), 8)]
        );
        assert_eq!(row_at(&rows, 0x1f).map(|row| row.start), Some(0x10));
        assert!(row_at(&rows, 0x20).is_none());
        assert!(row_at(&rows, 0x0f).is_none());
    }
}
