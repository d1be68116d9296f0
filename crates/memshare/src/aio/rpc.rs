//! Request/response, async: `Client::call_async` and `Server::recv_async`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::notifier::Registration;
use super::readiness::Readiness;
use super::Wait;
use crate::rpc::{Client, Request, Response, Server};
use crate::wait_set::member::Member;
use crate::Result;

fn server_registration(server: &Server) -> Result<Arc<Registration>> {
    super::registration(&server.wait_parts().1.aio, || Member::server(server))
}

fn client_registration(client: &Client) -> Result<Arc<Registration>> {
    super::registration(&client.wait_parts().3.aio, || Member::client(client))
}

impl Server {
    /// The next request from any client, waiting (asynchronously) while
    /// there is none: [`Server::recv`] as a future, the request in place.
    ///
    /// It borrows the server mutably (where `recv` borrows it shared), so
    /// that the future is `Send` (a server is not `Sync`); the
    /// [`Request`] it gives still borrows it. To hold several requests at
    /// once, take the first with `recv_async`, then others with
    /// [`Server::try_recv`].
    ///
    /// Cancel safe: dropped before it is ready, it has taken no request.
    ///
    /// ```
    /// use memshare::rpc::{Client, Server, ServerConfig};
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-server-async-{}", std::process::id());
    /// let mut server = Server::create(&name, ServerConfig::new())?;
    /// let mut client = Client::connect(&name)?; // another process, usually
    /// futures::executor::block_on(async {
    ///     let pending = client.send_request(b"2+2")?;
    ///     let request = server.recv_async().await?;
    ///     assert_eq!(&*request, b"2+2");
    ///     request.respond(b"4")?;
    ///     assert_eq!(&*client.receive_response(&pending)?, b"4");
    ///     memshare::Result::Ok(())
    /// })
    /// # }
    /// ```
    pub fn recv_async(&mut self) -> ServerRecvFuture<'_> {
        ServerRecvFuture {
            server: Some(self),
            wait: Wait::new(),
        }
    }

    /// A descriptor that becomes readable when a client pushed a request
    /// (or left or died, which `try_recv` then sees to), or the server was
    /// dropped: for event loops (see [`Readiness`]).
    pub fn readiness(&self) -> Result<Readiness> {
        Readiness::new(vec![server_registration(self)?])
    }
}

/// The future of [`Server::recv_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct ServerRecvFuture<'a> {
    /// Made from a `&'a mut Server`: no other reference to the server
    /// exists while `'a` lasts but this one and the request it gives.
    server: Option<&'a Server>,
    wait: Wait,
}

// The `Request` the future gives (not `Send`) is used where it was given; the future drops its
// reference as it gives it, and never touches the server again.
// SAFETY: the future is made from an exclusive borrow of the server (a `Server` is `Send`): no
// other thread reaches the server while the future lives, only the one that polls it.
unsafe impl Send for ServerRecvFuture<'_> {}

impl<'a> Future for ServerRecvFuture<'a> {
    type Output = Result<Request<'a>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let server: &'a Server = this
            .server
            .expect("ServerRecvFuture polled after it was ready");
        let found = server
            .upkeep_now_and_then()
            .and_then(|()| server.poll())
            .transpose();
        match found {
            Some(done) => {
                this.wait.done();
                this.server = None;
                Poll::Ready(done)
            }
            None => {
                let p = this.wait.park(server_registration(server), cx);
                if p.is_ready() {
                    this.server = None;
                }
                p
            }
        }
    }
}

impl std::fmt::Debug for ServerRecvFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRecvFuture")
            .field("done", &self.server.is_none())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Sends `request` and waits (asynchronously) for its response:
    /// [`Client::call`] as a future, the response in place.
    /// [`Error::NoResponse`](crate::Error::NoResponse) if the server
    /// dropped the request unanswered, [`Error::Disconnected`](crate::Error::Disconnected)
    /// if it went away first (within the liveness interval of its death).
    /// The task is woken for this call's response only: responses to other
    /// requests in flight ([`Client::send_request`]), come and not received
    /// yet, do not wake it.
    ///
    /// Cancel safety: the request is sent at the first poll. Dropped after
    /// that, before the response came, the response is discarded when it
    /// comes (its slot is busy until then), as after a timed-out
    /// `call_timeout`; nothing else is lost.
    ///
    /// ```
    /// use memshare::rpc::{Client, Server, ServerConfig};
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-call-async-{}", std::process::id());
    /// let server = Server::create(&name, ServerConfig::new())?;
    /// let mut client = Client::connect(&name)?;
    /// let serving = std::thread::spawn(move || -> memshare::Result<()> {
    ///     let request = server.recv()?;
    ///     let answer = request.to_ascii_uppercase();
    ///     request.respond(&answer)
    /// });
    /// let reply = futures::executor::block_on(client.call_async(b"ping"))?;
    /// assert_eq!(&*reply, b"PING");
    /// # drop(reply); serving.join().unwrap()?; Ok(()) }
    /// ```
    pub async fn call_async(&mut self, request: &[u8]) -> Result<Response<'_>> {
        let (slot, id) = self.send(request)?;
        ResponseFuture {
            client: Some(self),
            slot,
            id,
            wait: Wait::new(),
        }
        .await
    }

    /// A descriptor that becomes readable when a response (or a decline)
    /// to any request in flight came (a call's included), the server is
    /// gone, or the client was dropped: for event loops (see
    /// [`Readiness`]).
    pub fn readiness(&self) -> Result<Readiness> {
        Readiness::new(vec![client_registration(self)?])
    }
}

/// The wait for the response to request `id` in `slot`.
struct ResponseFuture<'a> {
    client: Option<&'a mut Client>,
    slot: u32,
    id: u64,
    wait: Wait,
}

impl<'a> Future for ResponseFuture<'a> {
    type Output = Result<Response<'a>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (slot, id) = (this.slot, this.id);
        let client = this
            .client
            .as_deref_mut()
            .expect("polled after it was ready");
        let answered = match client.answer(slot, id) {
            Ok(false) => match client.check_server(false) {
                Ok(()) => None,
                // The server may have answered just before it went.
                Err(e) => Some(
                    client
                        .answer(slot, id)
                        .and_then(|a| if a { Ok(()) } else { Err(e) }),
                ),
            },
            Ok(true) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        };
        match answered {
            Some(Ok(())) => {
                this.wait.done();
                let client = this.client.take().expect("checked above");
                Poll::Ready(client.response(slot, id))
            }
            Some(Err(e)) => {
                this.wait.done();
                this.client = None;
                Poll::Ready(Err(e))
            }
            None => {
                // Woken for this slot's answer only (or what ends every
                // call): another request's answer, unread, would wake it
                // at every round of the notifier.
                let p = this
                    .wait
                    .park_for(client_registration(client), Some(1 << slot), cx);
                if p.is_ready() {
                    // (The registration failed: the answer is discarded
                    // when it comes.)
                    client.abandon(slot);
                    this.client = None;
                }
                p
            }
        }
    }
}

impl Drop for ResponseFuture<'_> {
    fn drop(&mut self) {
        if let Some(client) = &self.client {
            // Dropped before the answer: it is discarded when it comes.
            client.abandon(self.slot);
        }
    }
}
