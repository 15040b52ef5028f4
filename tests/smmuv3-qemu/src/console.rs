//! The PL011 console and `println!`.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::ptr::NonNull;

use arm_pl011_uart::{PL011Registers, Uart, UniqueMmioPointer};

struct Console(UnsafeCell<Option<Uart<'static>>>);

// SAFETY: the image runs on one core and the interrupt handler never prints, so the
// console is never used from two contexts at once.
unsafe impl Sync for Console {}

static CONSOLE: Console = Console(UnsafeCell::new(None));

/// Start the console on the PL011 at `base`.
///
/// # Safety
/// `base` must be the PL011's registers, mapped as Device memory, used by nothing else.
pub unsafe fn init(base: usize) {
    // SAFETY: the caller vouches for the mapping.
    let uart = Uart::new(unsafe { UniqueMmioPointer::new(NonNull::new(base as *mut PL011Registers).unwrap()) });
    // SAFETY: single core, called once before anything prints.
    unsafe { *CONSOLE.0.get() = Some(uart) };
}

#[doc(hidden)]
pub fn print(args: fmt::Arguments) {
    // SAFETY: see `Console`'s Sync: one context at a time.
    if let Some(uart) = unsafe { &mut *CONSOLE.0.get() } {
        let _ = uart.write_fmt(args);
    }
}

/// Print to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::print(format_args!($($arg)*)));
}

/// Print a line to the console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::print!("{}\n", format_args!($($arg)*)));
}
