//! memshare for Python: the `memshare` package's native module
//! (`memshare._memshare`), built with maturin (`pip install
//! ./crates/memshare-py`).
//!
//! Segments and views, channels, publish-subscribe and request/response,
//! all on the Rust library's public API, with zero-copy buffers into shared
//! memory (the buffer protocol: `memoryview`, numpy) that cannot outlive
//! their mapping. How the borrowing guards of the Rust API are held for
//! Python objects: `src/shared.rs`. The package's documentation is its README.

#![cfg(unix)]

mod buffer;
mod channel;
mod errors;
mod lend;
mod pubsub;
mod rpc;
mod segment;
mod shared;

use pyo3::prelude::*;

/// The native module. The `memshare` package re-exports everything.
#[pymodule(gil_used = true)]
fn _memshare(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<segment::Segment>()?;
    m.add_class::<segment::View>()?;
    m.add_class::<segment::Offer>()?;
    m.add_function(wrap_pyfunction!(segment::send_segments, m)?)?;
    m.add_function(wrap_pyfunction!(segment::recv_segments, m)?)?;
    m.add_function(wrap_pyfunction!(segment::remove, m)?)?;
    m.add_function(wrap_pyfunction!(segment::validate_name, m)?)?;
    m.add_class::<channel::Sender>()?;
    m.add_class::<channel::Receiver>()?;
    m.add_class::<channel::Reservation>()?;
    m.add_class::<channel::Message>()?;
    m.add_class::<pubsub::Publisher>()?;
    m.add_class::<pubsub::Loan>()?;
    m.add_class::<pubsub::Subscriber>()?;
    m.add_class::<pubsub::Sample>()?;
    m.add_class::<rpc::Server>()?;
    m.add_class::<rpc::Request>()?;
    m.add_class::<rpc::ResponseLoan>()?;
    m.add_class::<rpc::Client>()?;
    m.add_class::<rpc::Pending>()?;
    m.add_class::<rpc::Response>()?;
    m.add("MAX_NAME_LEN", memshare::MAX_NAME_LEN)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
