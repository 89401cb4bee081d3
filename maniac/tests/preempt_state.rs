#![cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
//! The machine state of a task survives preemption bit for bit.
//!
//! Each test runs computations that keep one part of the state live across a long loop in inline
//! assembly, so that the compiler cannot keep anything in memory on their behalf:
//! - the general registers and the flags (an `adc` carry chain through every instruction, the
//!   direction flag set for the whole loop);
//! - all 16 `ymm` registers (AVX2), in assembly and through `std::arch` intrinsics;
//! - all 32 `zmm` registers and the `k1`..`k7` mask registers (AVX-512, where the CPU has it);
//! - the x87 stack (seven 80-bit values, full precision) and its control word, a different rounding
//!   mode and precision per task;
//! - the MXCSR rounding mode (a different one per task) with all 16 `xmm` registers, in assembly and
//!   in compiled Rust floating-point code;
//! - the thread's `errno` (not the machine's, but the code's to read after a failed call; a
//!   different value per task).
//!
//! Several such tasks share each worker of a runtime whose quantum is the shortest (100 µs), so
//! every task is preempted many times in the middle of its loop and the other tasks run with their
//! own values, modes and control words in the same registers meanwhile. Every result is compared
//! bit for bit with the same computation on a plain thread (never preempted), and the tests insist
//! on thousands of counted preemptions. A task also checks that its poll never left its OS thread.

mod common;
mod preempt_common;

use std::arch::asm;
use std::fmt::Debug;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TIMEOUT;
use preempt_common::{figures, gettid, join_within, preemptions, runtime, supported};

/// The preemptions a test must see (thousands, as the tests promise).
const TARGET_PREEMPTIONS: u64 = 2_000;
/// How long a test keeps running batches to reach [`TARGET_PREEMPTIONS`] on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(8);

/// A deterministic computation a task runs in one poll.
type Job<R> = Arc<dyn Fn() -> R + Send + Sync>;

/// Every job's result on a plain thread (no runtime: never preempted), the reference.
fn unpreempted<R: Send + 'static>(jobs: &[Job<R>]) -> Vec<R> {
    let jobs = jobs.to_vec();
    std::thread::spawn(move || jobs.iter().map(|job| job()).collect())
        .join()
        .expect("a reference computation failed")
}

/// Runs the jobs in batches as tasks on a two-worker runtime with the shortest quantum until
/// [`TARGET_PREEMPTIONS`] were counted, and checks every result against its reference (from
/// [`unpreempted`]).
fn matches_unpreempted<R>(test: &str, jobs: Vec<Job<R>>, references: Vec<R>)
where
    R: PartialEq + Debug + Send + 'static,
{
    let rt = runtime(2, maniac::preempt::MIN_QUANTUM);
    let started = Instant::now();
    let mut batches = 0;
    loop {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| {
                let job = job.clone();
                rt.spawn(async move {
                    let tid = gettid();
                    let result = job();
                    (result, tid, gettid())
                })
            })
            .collect();
        for (index, (handle, reference)) in handles.into_iter().zip(&references).enumerate() {
            let (result, before, after) = join_within(handle, TIMEOUT)
                .unwrap_or_else(|| panic!("{test}: job {index} did not finish ({})", figures(&rt)))
                .unwrap_or_else(|e| panic!("{test}: job {index} failed: {e:?}"));
            assert_eq!(
                &result,
                reference,
                "{test}: job {index} (batch {batches}) differs from its unpreempted run ({})",
                figures(&rt)
            );
            assert_eq!(before, after, "{test}: job {index}'s poll changed threads");
        }
        batches += 1;
        if preemptions(&rt) >= TARGET_PREEMPTIONS || started.elapsed() > PATIENCE {
            break;
        }
    }
    println!(
        "{test}: {} jobs x {batches} batches in {:?}; {}",
        jobs.len(),
        started.elapsed(),
        figures(&rt)
    );
    assert!(
        preemptions(&rt) >= TARGET_PREEMPTIONS,
        "{test}: only {} preemptions in {batches} batches ({:?})",
        preemptions(&rt),
        started.elapsed()
    );
}

/// `n` words of xorshift from `seed`.
fn words(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

/// Asserts that the references of `jobs` are pairwise different, so that a task that computed
/// with another task's registers or modes could not pass by luck.
fn assert_distinct<R: PartialEq + Debug>(results: &[R]) {
    for (i, a) in results.iter().enumerate() {
        for (j, b) in results.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "jobs {i} and {j} compute the same thing");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// General registers and flags.

/// One step per pair `a b`: `a += b + CF` (carry in and out), `a = bswap(a)`, `b += 4a + 0x55`.
macro_rules! gpr_steps {
    ($($a:ident $b:ident),*) => {
        concat!($(
            "adc ", stringify!($a), ", ", stringify!($b), "\n",
            "bswap ", stringify!($a), "\n",
            "lea ", stringify!($b), ", [", stringify!($b), " + 4*", stringify!($a), " + 0x55]\n",
        )*)
    };
}

/// 11 general registers (all the inline assembly may name, but the counter and the pointer) mixed
/// with an `adc` carry chain: the carry flag is live at every instruction boundary (`bswap`, `lea`
/// and `dec` leave it alone), and the direction flag is set for the whole loop. Returns the
/// registers, the final carry and whether the direction flag was still set at the end.
#[inline(never)]
fn gpr_loop(seed: u64, iterations: u64) -> ([u64; 11], u64, u64) {
    let mut regs: [u64; 11] = words(seed, 11).try_into().unwrap();
    let mut carry: u64 = 0;
    let mut direction: u64 = 0;
    // SAFETY: the assembly reads and writes only `regs` (through r15, which it does not change)
    // and the registers it declares; it clears the direction flag again before it ends, as the
    // ABI requires.
    unsafe {
        asm!(
            "mov rax, [r15 + 0]",
            "mov rdx, [r15 + 8]",
            "mov rsi, [r15 + 16]",
            "mov rdi, [r15 + 24]",
            "mov r8, [r15 + 32]",
            "mov r9, [r15 + 40]",
            "mov r10, [r15 + 48]",
            "mov r11, [r15 + 56]",
            "mov r12, [r15 + 64]",
            "mov r13, [r15 + 72]",
            "mov r14, [r15 + 80]",
            "std",
            "stc",
            "2:",
            gpr_steps!(
                rax rdx, rdx rsi, rsi rdi, rdi r8, r8 r9, r9 r10, r10 r11, r11 r12, r12 r13,
                r13 r14, r14 rax
            ),
            "dec rcx",
            "jnz 2b",
            "mov [r15 + 0], rax",
            "mov [r15 + 8], rdx",
            "mov [r15 + 16], rsi",
            "mov [r15 + 24], rdi",
            "mov [r15 + 32], r8",
            "mov [r15 + 40], r9",
            "mov [r15 + 48], r10",
            "mov [r15 + 56], r11",
            "mov [r15 + 64], r12",
            "mov [r15 + 72], r13",
            "mov [r15 + 80], r14",
            "setc al",
            "movzx eax, al",
            "mov rcx, rax",
            "pushfq",
            "pop rax",
            "shr rax, 10",
            "and eax, 1",
            "cld",
            in("r15") regs.as_mut_ptr(),
            inout("rcx") iterations => carry,
            out("rax") direction,
            out("rdx") _, out("rsi") _, out("rdi") _, out("r8") _, out("r9") _, out("r10") _,
            out("r11") _, out("r12") _, out("r13") _, out("r14") _,
        );
    }
    (regs, carry, direction)
}

#[test]
fn general_registers_and_flags_survive_preemption() {
    preempt_common::bounded_test(|| {
        if !supported("general_registers_and_flags_survive_preemption") {
            return;
        }
        let jobs: Vec<Job<([u64; 11], u64, u64)>> = (0..6u64)
            .map(|seed| Arc::new(move || gpr_loop(seed, 3_000_000)) as Job<_>)
            .collect();
        let references = unpreempted(&jobs);
        assert_distinct(&references);
        assert!(
            references.iter().all(|r| r.2 == 1),
            "the direction flag was lost"
        );
        matches_unpreempted(
            "general_registers_and_flags_survive_preemption",
            jobs,
            references,
        );
    });
}

// ---------------------------------------------------------------------------------------------
// AVX2: all 16 ymm registers.

/// One step per triple `a b`: `a = shuffle(a + b)`, `b ^= a` (invertible: no state is forgotten,
/// so a clobbered register shows in the result however long ago it happened).
macro_rules! avx2_steps {
    ($($a:literal $b:literal),*) => {
        concat!($(
            "vpaddq ymm", $a, ", ymm", $a, ", ymm", $b, "\n",
            "vpshufd ymm", $a, ", ymm", $a, ", 0x93\n",
            "vpxor ymm", $b, ", ymm", $b, ", ymm", $a, "\n",
        )*)
    };
}

/// `vmovdqu` of ymm register `i` from or to `[{p} + 32 * i]`, for each `i off` pair.
macro_rules! ymm_moves {
    (load $($i:literal $off:literal),*) => {
        concat!($("vmovdqu ymm", $i, ", ymmword ptr [{p} + ", $off, "]\n",)*)
    };
    (store $($i:literal $off:literal),*) => {
        concat!($("vmovdqu ymmword ptr [{p} + ", $off, "], ymm", $i, "\n",)*)
    };
}

macro_rules! all_ymm {
    ($dir:ident) => {
        ymm_moves!(
            $dir 0 0, 1 32, 2 64, 3 96, 4 128, 5 160, 6 192, 7 224, 8 256, 9 288, 10 320,
            11 352, 12 384, 13 416, 14 448, 15 480
        )
    };
}

/// The AVX2 loop in assembly: every ymm register live from the first instruction to the last.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn avx2_asm(seed: u64, iterations: u64) -> Vec<u64> {
    let mut state = words(seed, 64);
    // SAFETY: reads and writes the 512 bytes of `state` only; the caller checked AVX2.
    unsafe {
        asm!(
            all_ymm!(load),
            "2:",
            avx2_steps!(
                0 1, 1 2, 2 3, 3 4, 4 5, 5 6, 6 7, 7 8, 8 9, 9 10, 10 11, 11 12, 12 13, 13 14,
                14 15, 15 0
            ),
            "vpermq ymm0, ymm0, 0x39",
            "vpermq ymm4, ymm4, 0x39",
            "vpermq ymm8, ymm8, 0x39",
            "vpermq ymm12, ymm12, 0x39",
            "dec {n}",
            "jnz 2b",
            all_ymm!(store),
            "vzeroupper",
            p = in(reg) state.as_mut_ptr(),
            n = inout(reg) iterations => _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
        );
    }
    state
}

/// The same idea through `std::arch` intrinsics: 16 vectors of state in one compiled loop (in
/// an optimised build they live in the 16 ymm registers; in a debug build the intrinsics are
/// calls, preempted inside as well).
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn avx2_intrinsics(seed: u64, iterations: u64) -> Vec<u64> {
    use std::arch::x86_64::*;
    let init = words(seed, 64);
    // SAFETY: `init` holds 64 words, 4 per vector; unaligned loads.
    let mut v: [__m256i; 16] =
        std::array::from_fn(|i| unsafe { _mm256_loadu_si256(init[4 * i..].as_ptr().cast()) });
    for _ in 0..iterations {
        for i in 0..16 {
            let j = (i + 1) % 16;
            v[i] = _mm256_shuffle_epi32::<0x93>(_mm256_add_epi64(v[i], v[j]));
            v[j] = _mm256_xor_si256(v[j], v[i]);
        }
        v[0] = _mm256_permute4x64_epi64::<0x39>(v[0]);
        v[8] = _mm256_permute4x64_epi64::<0x39>(v[8]);
        v = black_box(v);
    }
    let mut out = vec![0u64; 64];
    for (i, vector) in v.iter().enumerate() {
        // SAFETY: `out` holds 64 words; unaligned store of 4 of them.
        unsafe { _mm256_storeu_si256(out[4 * i..].as_mut_ptr().cast(), *vector) };
    }
    out
}

#[test]
fn all_sixteen_ymm_registers_survive_preemption() {
    preempt_common::bounded_test(|| {
        if !supported("all_sixteen_ymm_registers_survive_preemption") {
            return;
        }
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("all_sixteen_ymm_registers_survive_preemption: skipped, no AVX2 on this CPU");
            return;
        }
        let intrinsics_iterations = if cfg!(debug_assertions) {
            20_000
        } else {
            1_000_000
        };
        let jobs: Vec<Job<Vec<u64>>> = (0..8u64)
            .map(|seed| {
                Arc::new(move || {
                    if seed % 4 == 3 {
                        // SAFETY: AVX2 was detected above.
                        unsafe { avx2_intrinsics(seed, intrinsics_iterations) }
                    } else {
                        // SAFETY: AVX2 was detected above.
                        unsafe { avx2_asm(seed, 2_000_000) }
                    }
                }) as Job<_>
            })
            .collect();
        let references = unpreempted(&jobs);
        assert_distinct(&references);
        matches_unpreempted(
            "all_sixteen_ymm_registers_survive_preemption",
            jobs,
            references,
        );
    });
}

// ---------------------------------------------------------------------------------------------
// AVX-512: all 32 zmm registers and the mask registers.

/// One step per `a b k r`: `a += b` where mask `k` says, `a = rotate(a, r)`, `b ^= a`.
macro_rules! avx512_steps {
    ($($a:literal $b:literal $k:literal $r:literal),*) => {
        concat!($(
            "vpaddq zmm", $a, " {{k", $k, "}}, zmm", $a, ", zmm", $b, "\n",
            "vprolq zmm", $a, ", zmm", $a, ", ", $r, "\n",
            "vpxorq zmm", $b, ", zmm", $b, ", zmm", $a, "\n",
        )*)
    };
}

/// `vmovdqu64` of zmm register `i` from or to `[{p} + 64 * i]`, for each `i off` pair.
macro_rules! zmm_moves {
    (load $($i:literal $off:literal),*) => {
        concat!($("vmovdqu64 zmm", $i, ", zmmword ptr [{p} + ", $off, "]\n",)*)
    };
    (store $($i:literal $off:literal),*) => {
        concat!($("vmovdqu64 zmmword ptr [{p} + ", $off, "], zmm", $i, "\n",)*)
    };
}

macro_rules! all_zmm {
    ($mac:ident $dir:ident) => {
        $mac!(
            $dir 0 0, 1 64, 2 128, 3 192, 4 256, 5 320, 6 384, 7 448, 8 512, 9 576, 10 640,
            11 704, 12 768, 13 832, 14 896, 15 960, 16 1024, 17 1088, 18 1152, 19 1216, 20 1280,
            21 1344, 22 1408, 23 1472, 24 1536, 25 1600, 26 1664, 27 1728, 28 1792, 29 1856,
            30 1920, 31 1984
        )
    };
}

/// The AVX-512 loop: 32 zmm registers (512 bytes of state each 64) and k1..k7 (masks that change
/// every iteration) live from the first instruction to the last. Returns the zmm registers and
/// the masks.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn avx512_asm(seed: u64, iterations: u64) -> (Vec<u64>, [u16; 8]) {
    let mut state = words(seed, 256);
    let mut masks = [0u16; 8];
    for (mask, word) in masks.iter_mut().zip(words(!seed, 8)) {
        *mask = word as u16;
    }
    // SAFETY: reads and writes the 2 KiB of `state` and the 16 bytes of `masks` only; the
    // caller checked AVX-512F.
    unsafe {
        asm!(
            all_zmm!(zmm_moves load),
            "kmovw k1, word ptr [{m} + 2]",
            "kmovw k2, word ptr [{m} + 4]",
            "kmovw k3, word ptr [{m} + 6]",
            "kmovw k4, word ptr [{m} + 8]",
            "kmovw k5, word ptr [{m} + 10]",
            "kmovw k6, word ptr [{m} + 12]",
            "kmovw k7, word ptr [{m} + 14]",
            "2:",
            avx512_steps!(
                0 1 1 7, 1 2 2 8, 2 3 3 9, 3 4 4 10, 4 5 5 11, 5 6 6 12, 6 7 7 13, 7 8 1 14,
                8 9 2 15, 9 10 3 16, 10 11 4 17, 11 12 5 18, 12 13 6 19, 13 14 7 20,
                14 15 1 21, 15 16 2 22, 16 17 3 23, 17 18 4 24, 18 19 5 25, 19 20 6 26,
                20 21 7 27, 21 22 1 28, 22 23 2 29, 23 24 3 30, 24 25 4 31, 25 26 5 32,
                26 27 6 33, 27 28 7 34, 28 29 1 35, 29 30 2 36, 30 31 3 37, 31 0 4 38
            ),
            "vshufi64x2 zmm0, zmm0, zmm0, 0x39",
            "vshufi64x2 zmm8, zmm8, zmm8, 0x39",
            "vshufi64x2 zmm16, zmm16, zmm16, 0x39",
            "vshufi64x2 zmm24, zmm24, zmm24, 0x39",
            "kxorw k1, k1, k2",
            "kxorw k2, k2, k3",
            "kxorw k3, k3, k4",
            "kxorw k4, k4, k5",
            "kxorw k5, k5, k6",
            "kxorw k6, k6, k7",
            "knotw k7, k7",
            "dec {n}",
            "jnz 2b",
            all_zmm!(zmm_moves store),
            "kmovw word ptr [{m} + 2], k1",
            "kmovw word ptr [{m} + 4], k2",
            "kmovw word ptr [{m} + 6], k3",
            "kmovw word ptr [{m} + 8], k4",
            "kmovw word ptr [{m} + 10], k5",
            "kmovw word ptr [{m} + 12], k6",
            "kmovw word ptr [{m} + 14], k7",
            "vzeroupper",
            p = in(reg) state.as_mut_ptr(),
            m = in(reg) masks.as_mut_ptr(),
            n = inout(reg) iterations => _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
            out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
            out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
            out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
            out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
            out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _,
            out("zmm28") _, out("zmm29") _, out("zmm30") _, out("zmm31") _,
            out("k1") _, out("k2") _, out("k3") _, out("k4") _,
            out("k5") _, out("k6") _, out("k7") _,
        );
    }
    (state, masks)
}

#[test]
fn all_zmm_and_mask_registers_survive_preemption() {
    preempt_common::bounded_test(|| {
        if !supported("all_zmm_and_mask_registers_survive_preemption") {
            return;
        }
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!(
                "all_zmm_and_mask_registers_survive_preemption: skipped, no AVX-512F on this CPU"
            );
            return;
        }
        let jobs: Vec<Job<(Vec<u64>, [u16; 8])>> = (0..6u64)
            .map(|seed| {
                // SAFETY: AVX-512F was detected above.
                Arc::new(move || unsafe { avx512_asm(seed, 700_000) }) as Job<_>
            })
            .collect();
        let references = unpreempted(&jobs);
        assert_distinct(&references);
        matches_unpreempted(
            "all_zmm_and_mask_registers_survive_preemption",
            jobs,
            references,
        );
    });
}

// ---------------------------------------------------------------------------------------------
// x87: the register stack at 80 bits and the control word.

/// The x87 control words the tasks use: every rounding mode, at extended (64-bit mantissa) and
/// double precision. All exceptions masked.
const X87_CONTROL_WORDS: [u16; 6] = [0x037F, 0x077F, 0x0B7F, 0x0F7F, 0x027F, 0x0E7F];

/// One step on the value at st(0): `x = x * K - round(x * K) + C` (rounded per the control
/// word, bounded, and chaotic; `C < 0`, so that the values change sign and rounding down differs
/// from rounding toward zero), then the next value comes to st(0).
macro_rules! x87_steps {
    ($($next:literal),*) => {
        concat!($(
            "fmul qword ptr [{k}]\n",
            "fld st(0)\n",
            "frndint\n",
            "fsubp st(1), st\n",
            "fadd qword ptr [{k} + 8]\n",
            "fxch st(", $next, ")\n",
        )*)
    };
}

/// Seven values on the x87 stack (and an eighth while each step runs), computed at the precision
/// and rounding of `control_word` for `iterations` rounds, stored as 80-bit values.
#[inline(never)]
fn x87_loop(seed: u64, control_word: u16, iterations: u64) -> [[u8; 10]; 7] {
    let inputs: Vec<f64> = words(seed, 7)
        .into_iter()
        .map(|w| (w >> 11) as f64 / (1u64 << 53) as f64)
        .collect();
    let constants = [3.718_281_828_459_045_f64, -0.358_979_323_846_264_f64];
    let mut out = [[0u8; 10]; 7];
    let mut saved_cw: u16 = 0;
    // SAFETY: reads `inputs`, `constants` and `control_word`, writes `out` and `saved_cw`; the x87
    // stack is empty on entry and on exit (seven loads, seven popping stores), and the caller's
    // control word is restored.
    unsafe {
        asm!(
            "fnstcw word ptr [{saved}]",
            "fldcw word ptr [{cw}]",
            "fld qword ptr [{i} + 48]",
            "fld qword ptr [{i} + 40]",
            "fld qword ptr [{i} + 32]",
            "fld qword ptr [{i} + 24]",
            "fld qword ptr [{i} + 16]",
            "fld qword ptr [{i} + 8]",
            "fld qword ptr [{i} + 0]",
            "2:",
            x87_steps!("1", "2", "3", "4", "5", "6"),
            "dec {n}",
            "jnz 2b",
            "fstp tbyte ptr [{o} + 0]",
            "fstp tbyte ptr [{o} + 10]",
            "fstp tbyte ptr [{o} + 20]",
            "fstp tbyte ptr [{o} + 30]",
            "fstp tbyte ptr [{o} + 40]",
            "fstp tbyte ptr [{o} + 50]",
            "fstp tbyte ptr [{o} + 60]",
            "fldcw word ptr [{saved}]",
            saved = in(reg) &raw mut saved_cw,
            cw = in(reg) &raw const control_word,
            i = in(reg) inputs.as_ptr(),
            k = in(reg) constants.as_ptr(),
            o = in(reg) out.as_mut_ptr(),
            n = inout(reg) iterations => _,
            out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
            out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
        );
    }
    out
}

#[test]
fn the_x87_stack_and_control_word_survive_preemption() {
    preempt_common::bounded_test(|| {
        if !supported("the_x87_stack_and_control_word_survive_preemption") {
            return;
        }
        let jobs: Vec<Job<[[u8; 10]; 7]>> = X87_CONTROL_WORDS
            .iter()
            .enumerate()
            .map(|(i, &cw)| Arc::new(move || x87_loop(i as u64 % 2, cw, 400_000)) as Job<_>)
            .collect();
        let references = unpreempted(&jobs);
        // Same seeds, different control words: the results differ, so a task that ran with another
        // task's control word (or with the fresh one the trampoline gives the worker) would fail.
        assert_distinct(&references);
        matches_unpreempted(
            "the_x87_stack_and_control_word_survive_preemption",
            jobs,
            references,
        );
    });
}

// ---------------------------------------------------------------------------------------------
// MXCSR: rounding modes, with all 16 xmm registers.

/// MXCSR values the tasks run with: each rounding mode, all exceptions masked; the last also
/// flushes denormals to zero.
const MXCSR_MODES: [u32; 5] = [0x1F80, 0x3F80, 0x5F80, 0x7F80, 0xFF80];

/// One step on lane `x` (xmm15 is the scratch): `x = x * K - round(x * K) + C`, every operation
/// rounded per MXCSR (`roundpd` imm 4: "use MXCSR.RC").
macro_rules! sse_steps {
    ($($x:literal),*) => {
        concat!($(
            "mulpd xmm", $x, ", xmmword ptr [{k}]\n",
            "roundpd xmm15, xmm", $x, ", 4\n",
            "subpd xmm", $x, ", xmm15\n",
            "addpd xmm", $x, ", xmmword ptr [{k} + 16]\n",
        )*)
    };
}

/// 15 xmm lanes of two doubles computed under MXCSR `mode` for `iterations` rounds. Returns the
/// lanes' bits and MXCSR as it was at the end (mode and sticky flags).
///
/// # Safety
/// The CPU must have SSE4.1.
#[target_feature(enable = "sse4.1")]
#[inline(never)]
unsafe fn sse_loop(seed: u64, mode: u32, iterations: u64) -> (Vec<u64>, u32) {
    let mut lanes: Vec<f64> = words(seed, 30)
        .into_iter()
        .map(|w| (w >> 11) as f64 / (1u64 << 53) as f64)
        .collect();
    #[repr(C, align(16))]
    struct Constants([f64; 4]);
    let constants = Constants([3.718_281_828_459_045, 2.9, -0.358_979_323_846_264, -0.3]);
    let mut saved: u32 = 0;
    let mut end: u32 = 0;
    // SAFETY: reads `constants` and `mode`, reads and writes the 30 doubles of `lanes` and the two
    // words `saved` and `end`; the caller's MXCSR is restored before the end. SSE4.1 was checked.
    unsafe {
        asm!(
            "stmxcsr dword ptr [{saved}]",
            "ldmxcsr dword ptr [{mode}]",
            "movupd xmm0, xmmword ptr [{l} + 0]",
            "movupd xmm1, xmmword ptr [{l} + 16]",
            "movupd xmm2, xmmword ptr [{l} + 32]",
            "movupd xmm3, xmmword ptr [{l} + 48]",
            "movupd xmm4, xmmword ptr [{l} + 64]",
            "movupd xmm5, xmmword ptr [{l} + 80]",
            "movupd xmm6, xmmword ptr [{l} + 96]",
            "movupd xmm7, xmmword ptr [{l} + 112]",
            "movupd xmm8, xmmword ptr [{l} + 128]",
            "movupd xmm9, xmmword ptr [{l} + 144]",
            "movupd xmm10, xmmword ptr [{l} + 160]",
            "movupd xmm11, xmmword ptr [{l} + 176]",
            "movupd xmm12, xmmword ptr [{l} + 192]",
            "movupd xmm13, xmmword ptr [{l} + 208]",
            "movupd xmm14, xmmword ptr [{l} + 224]",
            "2:",
            sse_steps!("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14"),
            "dec {n}",
            "jnz 2b",
            "movupd xmmword ptr [{l} + 0], xmm0",
            "movupd xmmword ptr [{l} + 16], xmm1",
            "movupd xmmword ptr [{l} + 32], xmm2",
            "movupd xmmword ptr [{l} + 48], xmm3",
            "movupd xmmword ptr [{l} + 64], xmm4",
            "movupd xmmword ptr [{l} + 80], xmm5",
            "movupd xmmword ptr [{l} + 96], xmm6",
            "movupd xmmword ptr [{l} + 112], xmm7",
            "movupd xmmword ptr [{l} + 128], xmm8",
            "movupd xmmword ptr [{l} + 144], xmm9",
            "movupd xmmword ptr [{l} + 160], xmm10",
            "movupd xmmword ptr [{l} + 176], xmm11",
            "movupd xmmword ptr [{l} + 192], xmm12",
            "movupd xmmword ptr [{l} + 208], xmm13",
            "movupd xmmword ptr [{l} + 224], xmm14",
            "stmxcsr dword ptr [{end}]",
            "ldmxcsr dword ptr [{saved}]",
            saved = in(reg) &raw mut saved,
            end = in(reg) &raw mut end,
            mode = in(reg) &raw const mode,
            l = in(reg) lanes.as_mut_ptr(),
            k = in(reg) constants.0.as_ptr(),
            n = inout(reg) iterations => _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
        );
    }
    (lanes.iter().map(|x| x.to_bits()).collect(), end)
}

/// MXCSR now.
fn read_mxcsr() -> u32 {
    let mut value: u32 = 0;
    // SAFETY: stores MXCSR into `value`.
    unsafe { asm!("stmxcsr dword ptr [{}]", in(reg) &raw mut value) };
    value
}

/// Sets MXCSR.
///
/// # Safety
/// Compiled code assumes the default floating-point environment: the caller computes under
/// `value` only in code whose results it treats as "whatever the hardware does", and restores.
unsafe fn write_mxcsr(value: u32) {
    // SAFETY: loads a valid MXCSR value (the caller's promise) from `value`.
    unsafe { asm!("ldmxcsr dword ptr [{}]", in(reg) &raw const value) };
}

/// Compiled Rust floating-point code under MXCSR `mode`: a long loop whose every operation rounds
/// per the mode (the inputs go through `black_box`, so nothing is folded at compile time). Checks
/// MXCSR's rounding bits every few hundred steps, and returns the result's bits and how many
/// checks found the mode changed.
#[inline(never)]
fn rust_float_loop(seed: u64, mode: u32, iterations: u64) -> (u64, u64, u32) {
    let saved = read_mxcsr();
    // SAFETY: the results are compared with the same code under the same mode on a plain thread,
    // and MXCSR is restored before returning.
    unsafe { write_mxcsr(mode) };
    let mut x = black_box((seed as f64 + 1.0) / 7.0);
    let k = black_box(3.718_281_828_459_045_f64);
    let c = black_box(-0.358_979_323_846_264_f64);
    let mut changed = 0u32;
    for i in 0..iterations {
        let y = x * k;
        x = black_box(y - (y / 1.0).trunc() + c);
        if i % 512 == 0 && read_mxcsr() & 0xFFC0 != mode & 0xFFC0 {
            changed += 1;
        }
    }
    let end = read_mxcsr();
    // SAFETY: restores the caller's MXCSR.
    unsafe { write_mxcsr(saved) };
    (x.to_bits(), u64::from(end & 0xFFC0), changed)
}

#[test]
fn mxcsr_rounding_modes_survive_preemption() {
    preempt_common::bounded_test(|| {
        if !supported("mxcsr_rounding_modes_survive_preemption") {
            return;
        }
        if !std::arch::is_x86_feature_detected!("sse4.1") {
            eprintln!("mxcsr_rounding_modes_survive_preemption: skipped, no SSE4.1 on this CPU");
            return;
        }
        let rust_iterations = if cfg!(debug_assertions) {
            300_000
        } else {
            10_000_000
        };
        let mut jobs: Vec<Job<(Vec<u64>, u32)>> = MXCSR_MODES
            .iter()
            .map(|&mode| {
                // SAFETY: SSE4.1 was detected above.
                Arc::new(move || unsafe { sse_loop(5, mode, 600_000) }) as Job<_>
            })
            .collect();
        jobs.extend(MXCSR_MODES[..4].iter().map(|&mode| {
            Arc::new(move || {
                let (bits, end, changed) = rust_float_loop(9, mode, rust_iterations);
                (vec![bits, end], changed)
            }) as Job<_>
        }));
        let references = unpreempted(&jobs);
        // The four rounding modes give four different results, in assembly and in Rust code.
        assert_distinct(&references[..4]);
        assert_distinct(&references[MXCSR_MODES.len()..]);
        for (reference, &mode) in references.iter().zip(&MXCSR_MODES) {
            assert_eq!(reference.1 & 0xFFC0, mode & 0xFFC0, "MXCSR at the end");
        }
        matches_unpreempted("mxcsr_rounding_modes_survive_preemption", jobs, references);
    });
}

// ---------------------------------------------------------------------------------------------
// errno.

/// Sets this thread's `errno` to `value`, computes for `iterations` steps and checks every few
/// hundred that `errno` is still `value`; returns the result and how many checks found it
/// changed.
#[inline(never)]
fn errno_loop(seed: u64, value: i32, iterations: u64) -> (u64, u32) {
    // SAFETY: errno is this thread's; the task's poll never leaves its thread.
    unsafe { *libc::__errno_location() = value };
    let mut x = seed | 1;
    let mut changed = 0u32;
    let mut i = 0;
    while i < iterations {
        x = preempt_common::opaque(preempt_common::mix(x));
        // SAFETY: as above.
        if i % 512 == 0 && unsafe { *libc::__errno_location() } != value {
            changed += 1;
        }
        i += 1;
    }
    (x, changed)
}

#[test]
fn errno_survives_preemption() {
    preempt_common::bounded_test(|| {
        if !supported("errno_survives_preemption") {
            return;
        }
        let iterations = if cfg!(debug_assertions) {
            400_000
        } else {
            4_000_000
        };
        let jobs: Vec<Job<(u64, u32)>> = (0..6)
            .map(|task| {
                Arc::new(move || errno_loop(2 * task + 1, 1000 + task as i32, iterations)) as Job<_>
            })
            .collect();
        let references = unpreempted(&jobs);
        assert_distinct(&references);
        assert!(references.iter().all(|&(_, changed)| changed == 0));
        matches_unpreempted("errno_survives_preemption", jobs, references);
    });
}

// ---------------------------------------------------------------------------------------------
// Everything at once: each kind of state clobbers the others on the same workers.

#[derive(Debug, PartialEq)]
enum Any {
    Gpr([u64; 11], u64, u64),
    Ymm(Vec<u64>),
    Zmm(Vec<u64>, [u16; 8]),
    X87([[u8; 10]; 7]),
    Sse(Vec<u64>, u32),
}

#[test]
fn every_kind_of_state_survives_preemption_next_to_the_others() {
    preempt_common::bounded_test(|| {
        if !supported("every_kind_of_state_survives_preemption_next_to_the_others") {
            return;
        }
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        let sse41 = std::arch::is_x86_feature_detected!("sse4.1");
        let mut jobs: Vec<Job<Any>> = Vec::new();
        for seed in 0..2u64 {
            jobs.push(Arc::new(move || {
                let (regs, carry, direction) = gpr_loop(seed + 10, 1_500_000);
                Any::Gpr(regs, carry, direction)
            }));
            jobs.push(Arc::new(move || {
                Any::X87(x87_loop(
                    seed,
                    X87_CONTROL_WORDS[2 + seed as usize],
                    200_000,
                ))
            }));
            if avx2 {
                jobs.push(Arc::new(move || {
                    // SAFETY: AVX2 was detected above.
                    let ymm = unsafe { avx2_asm(seed + 20, 1_000_000) };
                    Any::Ymm(ymm)
                }));
            }
            if avx512 {
                jobs.push(Arc::new(move || {
                    // SAFETY: AVX-512F was detected above.
                    let (zmm, masks) = unsafe { avx512_asm(seed + 30, 350_000) };
                    Any::Zmm(zmm, masks)
                }));
            }
            if sse41 {
                jobs.push(Arc::new(move || {
                    // SAFETY: SSE4.1 was detected above.
                    let (lanes, end) =
                        unsafe { sse_loop(seed, MXCSR_MODES[1 + 2 * seed as usize], 300_000) };
                    Any::Sse(lanes, end)
                }));
            }
        }
        if !avx512 {
            eprintln!(
                "every_kind_of_state_survives_preemption_next_to_the_others: no AVX-512F here"
            );
        }
        let references = unpreempted(&jobs);
        matches_unpreempted(
            "every_kind_of_state_survives_preemption_next_to_the_others",
            jobs,
            references,
        );
    });
}
