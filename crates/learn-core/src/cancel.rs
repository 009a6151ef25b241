//! Cooperative cancellation of long computations.
//!
//! The learner service runs training and evaluation on blocking threads; when the caller
//! goes away (or the server drains) it sets a flag, and the loops here check it at cheap
//! points (per `lambda` of the cross-validation, per KPI form, before each final fit) and
//! stop with [`LearnError::Cancelled`](crate::LearnError::Cancelled).

use std::fmt;
use std::sync::Arc;

use crate::error::{LearnError, Result};

/// A cancellation check: asks whether the computation should stop. The default never
/// cancels. Compares equal to any other (it is not part of the options' value).
#[derive(Clone, Default)]
pub struct Cancel(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl Cancel {
    /// A check that asks `is_cancelled`.
    pub fn new(is_cancelled: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(is_cancelled)))
    }

    /// A check that never cancels.
    pub fn never() -> Self {
        Self(None)
    }

    /// Whether the computation should stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f())
    }

    /// `Err(LearnError::Cancelled)` when the computation should stop.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(LearnError::Cancelled)
        } else {
            Ok(())
        }
    }
}

impl fmt::Debug for Cancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Cancel(checked)"
        } else {
            "Cancel(never)"
        })
    }
}

impl PartialEq for Cancel {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn checks_ask_the_flag() {
        assert!(Cancel::never().check().is_ok());
        assert!(Cancel::default().check().is_ok());
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let c = Cancel::new(move || f.load(Ordering::Relaxed));
        assert!(c.check().is_ok());
        flag.store(true, Ordering::Relaxed);
        assert_eq!(c.check(), Err(LearnError::Cancelled));
        assert_eq!(c, Cancel::never());
    }
}
