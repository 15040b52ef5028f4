//! This PD's own wake-ups, timed by the generic timer: the handling of one notification,
//! fault or call, from its handler's start to its end, console output included (a debug
//! kernel prints a character a system call, inside the wake-up that prints), the kernel's
//! entry and exit around it not. A measurement build (feature `measure-wake-ups`) tells
//! a client, through `iommu_protocol::measure::WAKE_UP`, the wake-up before its call and
//! the longest since the last one asked: how long this PD held the core when the client's
//! interrupt came, by this PD's clock rather than by the client that woke it. A product
//! build keeps no times (`now` is 0 and `ended` does nothing).

#[derive(Default)]
pub struct WakeUps {
    /// When the last wake-up began and ended, in ticks.
    began: u64,
    ended: u64,
    /// The longest wake-up since `take`, in ticks.
    longest: u64,
}

/// The generic timer's count, in a measurement build.
pub fn now() -> u64 {
    if cfg!(feature = "measure-wake-ups") {
        generic_timer::ticks()
    } else {
        0
    }
}

impl WakeUps {
    /// A wake-up that began at `began` (`now`) ends.
    pub fn ended(&mut self, began: u64) {
        if cfg!(feature = "measure-wake-ups") {
            let ended = generic_timer::ticks();
            self.began = began;
            self.ended = ended;
            self.longest = self.longest.max(ended.wrapping_sub(began));
        }
    }

    /// `WAKE_UP`'s reply (`iommu_protocol::measure::WAKE_UP_*`): when the last wake-up began
    /// and ended, and the longest since the last `take`, which starts again here.
    #[cfg_attr(not(feature = "measure-wake-ups"), allow(dead_code))]
    pub fn take(&mut self) -> [u64; 3] {
        let told = [self.began, self.ended, self.longest];
        self.longest = 0;
        told
    }
}
