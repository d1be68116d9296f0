//! A readiness handle for event loops (the `async` feature's `Readiness`):
//! a manual-reset event, unnamed and not inheritable, that a thread of
//! this process sets and the loop's owner resets. Waitable with
//! `WaitForSingleObject`/`WaitForMultipleObjects`, or by any reactor that
//! takes a waitable handle.

use std::os::windows::io::{AsRawHandle, RawHandle};

use windows_sys::Win32::System::Threading::{CreateEventW, ResetEvent, SetEvent};

use super::{last_error, win_error, Handle};
use crate::Result;

/// The event.
#[derive(Debug)]
pub(crate) struct Event {
    handle: Handle,
}

impl Event {
    /// A new event, not set.
    pub(crate) fn new() -> Result<Event> {
        // SAFETY: no attributes (not inheritable, default descriptor), no
        // name; manual-reset, not set.
        let raw = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        let handle = Handle::from_raw(raw)
            .ok_or_else(|| win_error(None, "CreateEventW (readiness)", last_error()))?;
        Ok(Event { handle })
    }

    /// Sets the event (it stays set until [`Event::clear`]).
    pub(crate) fn signal(&self) {
        // SAFETY: an open event handle, owned by `self`.
        let ok = unsafe { SetEvent(self.handle.raw()) };
        debug_assert!(ok != 0, "SetEvent: error {}", last_error());
    }

    /// Resets the event: not set until the next [`Event::signal`].
    pub(crate) fn clear(&self) {
        // SAFETY: an open event handle, owned by `self`.
        let ok = unsafe { ResetEvent(self.handle.raw()) };
        debug_assert!(ok != 0, "ResetEvent: error {}", last_error());
    }
}

impl AsRawHandle for Event {
    fn as_raw_handle(&self) -> RawHandle {
        self.handle.raw() as RawHandle
    }
}
