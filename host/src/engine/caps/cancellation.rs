//! `cancellation`: lets a step notice a cancelled run or a passed deadline between units of work.

use super::StepHost;
use crate::engine::bindings::cancellation::Host;

impl Host for StepHost {
    fn is_cancelled(&mut self) -> bool {
        self.should_stop()
    }
}
