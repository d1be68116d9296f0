//! The one place that talks to the operating system.
//!
//! Each platform family is a module that offers the same small set of items
//! to the layers above: [`Object`] (an open shared-memory object with its
//! name and lifetime bookkeeping), [`Mapping`] (one mapped window of it) and
//! a few free functions. Nothing outside this module uses `cfg(target_os)`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
