//! Giving segments to other processes: children inherit them, running
//! processes receive them over a socket, and read-only handles are enforced
//! by the kernel.
//!
//! # Inheritance, scoped to one child
//!
//! [`CommandExt::share`] gives one segment to the one child that a
//! `Command` spawns, under a key; the child calls [`Segment::inherited`]
//! with the same key. Descriptors stay close-on-exec in the parent at all
//! times, so children spawned at the same moment by other threads get
//! nothing: the descriptor is made inheritable only inside the forked child,
//! between `fork` and `exec` (an async-signal-safe `fcntl`). The child's
//! [`Segment::inherited`] makes it close-on-exec again, so grandchildren
//! get nothing unless it is shared again.
//!
//! The value travels in the environment variable `MEMSHARE_SEGMENT_<KEY>`
//! (`<KEY>` is the key in upper case; keys are 1 to 64 ASCII letters,
//! digits and `_`, and case-insensitive). The value is a list of
//! `field=value` pairs separated by `;`, starting with the version:
//!
//! ```text
//! v1;handle=7;id=43:1187;len=4096;access=rw;parent=5123;name=camera-frames
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `handle` | the descriptor number in the child |
//! | `id` | the object's identity, `device:inode`: a descriptor that is open but is another object is refused |
//! | `len` | the size in bytes; checked against the object's real size |
//! | `access` | `rw` or `ro`; a read-only claim is checked against the descriptor and, for anonymous segments, the seals |
//! | `parent` | the process id of the parent that shared it: a grandchild that inherited the environment but not the descriptor is told so |
//! | `name` | present for named segments; checked to refer to the same object |
//!
//! A missing, malformed or lying value is an [`Error::InvalidHandle`]
//! naming the key, never a crash. The same value can be passed any other
//! way (a command-line argument) and taken with [`Segment::inherited_from`].
//!
//! ## On Windows
//!
//! The same `share`/`inherited` pair works, without inheritable handles:
//! `share` registers a duplicate of the handle with this process's broker
//! under a random one-time token (the `id` field of the value), and the
//! child's [`Segment::inherited`] asks the broker over a named pipe; the
//! broker checks that the asker is its direct child and `DuplicateHandle`s
//! the section into exactly that process. Why, and the limits:
//! `docs/platforms.md`.
//!
//! # Handle passing to a running process
//!
//! [`send_segments`] sends several segments in one message over a connected
//! Unix socket (`SCM_RIGHTS`), each under a key; [`recv_segments`] receives
//! them. The message's payload (documented on [`encode_message`]) tells the
//! receiver which descriptor is which. The receiver trusts nothing it is
//! told: descriptors arrive close-on-exec (`MSG_CMSG_CLOEXEC`), truncated
//! control data is refused, descriptors beyond those the payload describes
//! are closed and refused, and each descriptor must be a shared-memory
//! object of the claimed size and access.
//!
//! On Windows, `Segment::duplicate_into` offers the segment to one running
//! process (any process handle, a [`std::process::Child`] for one) and
//! returns a value with `to=<pid>` for the caller to deliver by any means;
//! the receiver's [`Segment::inherited_from`] claims it from the sender's
//! broker, which duplicates the section into exactly that process, and
//! checks that the handle is an open section of the claimed size and
//! access.
//!
//! # Lifetimes
//!
//! In each process, a segment lives while a [`Segment`] handle or a view of
//! it exists. A named segment given to a child or sent to a process is
//! given a holder of its own: the receiver counts as a holder from the
//! moment the descriptor is made for it (a message in flight, a `Command`
//! not yet spawned) until it drops the segment or dies, so the name stays
//! valid if the sender goes away first, and goes once every holder is gone.

#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::process::Command;

use crate::sys::{self, Claim, Object};
use crate::{validate_name, Error, Result, Segment};

/// The prefix of the environment variable that carries an inherited
/// segment's value: `MEMSHARE_SEGMENT_<KEY>`.
pub const INHERIT_ENV_PREFIX: &str = "MEMSHARE_SEGMENT_";

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// The environment variable that carries the segment shared under `key`.
///
/// ```
/// assert_eq!(memshare::inherit_env_var("frames").unwrap(), "MEMSHARE_SEGMENT_FRAMES");
/// assert!(memshare::inherit_env_var("no spaces").is_err());
/// ```
pub fn inherit_env_var(key: &str) -> Result<String> {
    validate_key(key)?;
    Ok(format!("{INHERIT_ENV_PREFIX}{}", key.to_ascii_uppercase()))
}

fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "a key must not be empty"
    } else if key.len() > MAX_KEY_LEN {
        "a key must be at most 64 bytes long"
    } else if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        "a key may only contain ASCII letters, digits and '_'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidHandle {
        object: format!("key {key:?}"),
        reason: reason.into(),
    })
}

/// An inheritance value, parsed but not yet checked against the descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InheritValue {
    pub handle: u64,
    pub parent: u32,
    /// Set for a handle duplicated straight into one process (Windows'
    /// [`Segment::duplicate_into`]): that process's id.
    pub to: Option<u32>,
    pub claim: Claim,
}

/// Parses the value of `MEMSHARE_SEGMENT_<KEY>` (format in the module docs).
pub(crate) fn parse_inherit_value(origin: &str, value: &str) -> Result<InheritValue> {
    let bad = |reason: String| Error::InvalidHandle {
        object: origin.to_owned(),
        reason,
    };
    if value.len() > 512 {
        return Err(bad(format!(
            "the value is {} bytes long: too long",
            value.len()
        )));
    }
    if let Some(reason) = value.strip_prefix("error;") {
        return Err(bad(format!("the parent could not share it: {reason}")));
    }
    let mut fields = value.split(';');
    if fields.next() != Some("v1") {
        return Err(bad(format!(
            "{value:?} does not start with the version \"v1\""
        )));
    }
    let (mut handle, mut id, mut len, mut access, mut parent, mut to, mut name) =
        (None, None, None, None, None, None, None);
    for field in fields {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| bad(format!("field {field:?} is not of the form name=value")))?;
        let slot = match k {
            "handle" => &mut handle,
            "id" => &mut id,
            "len" => &mut len,
            "access" => &mut access,
            "parent" => &mut parent,
            "to" => &mut to,
            "name" => &mut name,
            _ => return Err(bad(format!("unknown field {k:?}"))),
        };
        if slot.replace(v).is_some() {
            return Err(bad(format!("field {k:?} appears twice")));
        }
    }
    let number = |field: &str, v: Option<&str>| -> Result<u64> {
        let v = v.ok_or_else(|| bad(format!("field {field:?} is missing")))?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("field {field:?} is not a number: {v:?}")));
        }
        v.parse()
            .map_err(|_| bad(format!("field {field:?} is out of range: {v:?}")))
    };
    let (dev, ino) = id
        .and_then(|id| id.split_once(':'))
        .ok_or_else(|| bad("field \"id\" is missing or not device:inode".into()))?;
    let readonly = match access {
        Some("ro") => true,
        Some("rw") => false,
        other => {
            return Err(bad(format!(
                "field \"access\" must be ro or rw, not {other:?}"
            )))
        }
    };
    if let Some(name) = name {
        validate_name(name)?;
    }
    Ok(InheritValue {
        handle: number("handle", handle)?,
        parent: u32::try_from(number("parent", parent)?)
            .map_err(|_| bad("field \"parent\" is out of range".into()))?,
        to: match to {
            Some(to) => Some(
                u32::try_from(number("to", Some(to))?)
                    .map_err(|_| bad("field \"to\" is out of range".into()))?,
            ),
            None => None,
        },
        claim: Claim {
            name: name.map(str::to_owned),
            len: number("len", len)?,
            readonly,
            identity: Some((number("id", Some(dev))?, number("id", Some(ino))?)),
        },
    })
}

/// Fuzzing seam (the `names_and_values` target in `fuzz/`), not part of the
/// API: parses an inheritance value with the parser [`Segment::inherited`]
/// uses, without adopting any descriptor. Returns the value's canonical
/// form (fields in the documented order) if it parses, `None` if it is
/// refused.
#[doc(hidden)]
pub fn __fuzz_parse_inherit_value(value: &str) -> Option<String> {
    let parsed = parse_inherit_value("fuzz", value).ok()?;
    let (dev, ino) = parsed.claim.identity.expect("the parser always sets id");
    let mut canonical = format!(
        "v1;handle={};id={dev}:{ino};len={};access={};parent={}",
        parsed.handle,
        parsed.claim.len,
        if parsed.claim.readonly { "ro" } else { "rw" },
        parsed.parent
    );
    if let Some(to) = parsed.to {
        canonical.push_str(&format!(";to={to}"));
    }
    if let Some(name) = &parsed.claim.name {
        canonical.push_str(";name=");
        canonical.push_str(name);
    }
    Some(canonical)
}

fn format_inherit_value(handle: u64, id: (u64, u64), object: &Object, to: Option<u32>) -> String {
    let (dev, ino) = id;
    let mut value = format!(
        "v1;handle={handle};id={dev}:{ino};len={};access={};parent={}",
        object.len(),
        if object.writable() { "rw" } else { "ro" },
        std::process::id()
    );
    if let Some(to) = to {
        value.push_str(&format!(";to={to}"));
    }
    if let Some(name) = object.name() {
        value.push_str(";name=");
        value.push_str(name);
    }
    value
}

/// Shares segments with the child a [`Command`] spawns.
///
/// ```
/// use std::process::Command;
/// use memshare::{CommandExt, Segment};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let segment = Segment::create(4096)?;
/// segment.map(..)?.write_at(0, b"hi")?;
/// // A Rust child calls `Segment::inherited("frames")`; here we only
/// // look at the variable the child gets.
/// let mut cmd = Command::new("some-child");
/// cmd.try_share("frames", &segment)?;
/// let value = cmd.get_envs().find(|(k, _)| *k == "MEMSHARE_SEGMENT_FRAMES");
/// assert!(value.unwrap().1.unwrap().to_str().unwrap().starts_with("v1;handle="));
/// # Ok(())
/// # }
/// ```
pub trait CommandExt {
    /// Gives `segment` to the child under `key`, and puts the value the
    /// child needs in the environment variable
    /// [`inherit_env_var(key)`](inherit_env_var).
    ///
    /// Unix: the descriptor is made inheritable in that child only.
    /// Windows: the child asks this process for the section, which is
    /// duplicated into exactly that child (see the module docs).
    ///
    /// If sharing cannot be prepared (an invalid or repeated key, no
    /// descriptors left), spawning fails with `InvalidInput` on Unix; on
    /// Windows, where `Command` has no hook to fail the spawn, the child's
    /// [`Segment::inherited`] reports the reason. Use
    /// [`CommandExt::try_share`] to get it at once.
    fn share(&mut self, key: &str, segment: &Segment) -> &mut Command;

    /// Like [`CommandExt::share`], with the error at once.
    ///
    /// ```
    /// use memshare::{CommandExt, Segment};
    /// let segment = Segment::create(4096).unwrap();
    /// let mut cmd = std::process::Command::new("true");
    /// assert!(cmd.try_share("bad key", &segment).is_err());
    /// ```
    fn try_share(&mut self, key: &str, segment: &Segment) -> Result<&mut Command>;
}

impl CommandExt for Command {
    fn share(&mut self, key: &str, segment: &Segment) -> &mut Command {
        if let Err(e) = self.try_share(key, segment) {
            let var = inherit_env_var(key).unwrap_or_default();
            sys::fail_share(self, &var, &e.to_string());
        }
        self
    }

    fn try_share(&mut self, key: &str, segment: &Segment) -> Result<&mut Command> {
        let var = inherit_env_var(key)?;
        if self.get_envs().any(|(k, _)| k == var.as_str()) {
            return Err(Error::InvalidHandle {
                object: format!("key {key:?}"),
                reason: "this command already shares a segment under that key".into(),
            });
        }
        let (handle, id) = sys::offer_to_child(self, segment.object())?;
        let value = format_inherit_value(handle, id, segment.object(), None);
        self.env(var, value);
        Ok(self)
    }
}

impl Segment {
    /// Takes the segment the parent shared under `key` with
    /// [`CommandExt::share`].
    ///
    /// Fails with [`Error::InvalidHandle`], naming the key, if the variable
    /// is missing or malformed, if it was meant for another process (a
    /// grandchild that inherited the environment), or if the descriptor is
    /// not the shared-memory object it claims to be. Each key can be taken
    /// once.
    ///
    /// ```no_run
    /// # fn main() -> memshare::Result<()> {
    /// // In a child spawned with `cmd.share("frames", &segment)`:
    /// let frames = memshare::Segment::inherited("frames")?;
    /// # Ok(()) }
    /// ```
    pub fn inherited(key: &str) -> Result<Segment> {
        let var = inherit_env_var(key)?;
        let origin = format!("inherited segment {key:?} ({var})");
        let value = std::env::var(&var).map_err(|e| Error::InvalidHandle {
            object: origin.clone(),
            reason: match e {
                std::env::VarError::NotPresent => {
                    "the variable is not set: no segment was shared under this key".into()
                }
                std::env::VarError::NotUnicode(_) => "the value is not valid UTF-8".into(),
            },
        })?;
        Segment::take_inherited(&origin, &value)
    }

    /// Takes an inherited segment whose value (see the [`share`](crate::share)
    /// module docs) reached this process another way, for example on the
    /// command line. `key` is only used to name the segment in errors.
    pub fn inherited_from(key: &str, value: &str) -> Result<Segment> {
        Segment::take_inherited(&format!("inherited segment {key:?}"), value)
    }

    fn take_inherited(origin: &str, value: &str) -> Result<Segment> {
        let parsed = parse_inherit_value(origin, value)?;
        if let Some(to) = parsed.to {
            let me = std::process::id();
            if to != me {
                return Err(Error::InvalidHandle {
                    object: origin.to_owned(),
                    reason: format!(
                        "it was duplicated into process {to}, and this is process {me}"
                    ),
                });
            }
            return Ok(Segment::from_object(sys::adopt_duplicated(
                parsed.handle,
                parsed.parent,
                &parsed.claim,
                origin,
            )?));
        }
        let parent = sys::parent_pid();
        if parsed.parent != parent {
            return Err(Error::InvalidHandle {
                object: origin.to_owned(),
                reason: format!(
                    "it was shared by process {} with its child, and this process's parent is {parent}",
                    parsed.parent
                ),
            });
        }
        Ok(Segment::from_object(sys::adopt_inherited(
            parsed.handle,
            parsed.parent,
            &parsed.claim,
            origin,
        )?))
    }

    /// A handle through which no process can ever write, enforced by the
    /// kernel (anonymous segments on Linux: `F_SEAL_FUTURE_WRITE` on the
    /// memfd, and a new read-only descriptor).
    ///
    /// Views that exist keep working, writable ones included; but from now
    /// on no writable view can be made of this segment, through any handle,
    /// in any process. So map what you will write first, then make the
    /// read-only handle to share. A receiver that tries to map it writable
    /// or to `mprotect` a view writable is refused; reopening it through
    /// `/proc/self/fd` with `O_RDWR` succeeds, but every write and writable
    /// mapping through that descriptor is refused (`EPERM`).
    /// Named segments: [`Error::Unsupported`] (anyone who knows the name
    /// may open it writable).
    ///
    /// Windows: a handle with `SECTION_MAP_READ | SECTION_QUERY` only, for
    /// anonymous sections created in this process, whose security
    /// descriptor refuses every duplication to more access. Holders of
    /// writable handles can still write (Windows has no seals: see
    /// [`Segment::is_write_sealed`]); a section received from elsewhere
    /// gives [`Error::Unsupported`].
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// let writer = segment.map(..)?;
    /// let readonly = segment.to_readonly()?;
    /// writer.write_at(0, b"still writable")?;
    /// assert!(readonly.is_readonly());
    /// assert!(readonly.map(..).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn to_readonly(&self) -> Result<Segment> {
        Ok(Segment::from_object(self.object().to_readonly()?))
    }

    /// Whether the kernel forbids every new write to this segment, through
    /// any handle in any process (a segment made by
    /// [`Segment::to_readonly`], or sealed by its creator). A receiver that
    /// relies on the contents not changing checks this, not what it was
    /// told.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// assert!(!segment.is_write_sealed());
    /// # #[cfg(target_os = "linux")]
    /// assert!(segment.to_readonly()?.is_write_sealed());
    /// # Ok(()) }
    /// ```
    pub fn is_write_sealed(&self) -> bool {
        self.object().write_sealed()
    }

    /// Takes descriptor `fd` of process `pid` (Linux: `pidfd_open` +
    /// `pidfd_getfd`; Windows: handle value `fd`, with
    /// `OpenProcess(PROCESS_DUP_HANDLE)` + `DuplicateHandle`). This needs
    /// the right to ptrace that process (Linux; usually: it is your child,
    /// or you are privileged) or to duplicate its handles (Windows: a
    /// process of the same user, or privileged); otherwise
    /// [`Error::PermissionDenied`]. What is taken must be a shared-memory
    /// object; the segment has no name, and on Windows its size is the
    /// section's, in whole pages. Other Unixes: [`Error::Unsupported`].
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// # let segment = memshare::Segment::create(4096)?;
    /// # #[cfg(unix)]
    /// # let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&segment));
    /// # #[cfg(windows)]
    /// # let fd = std::os::windows::io::AsRawHandle::as_raw_handle(
    /// #     &std::os::windows::io::AsHandle::as_handle(&segment)) as i32;
    /// if let Ok(taken) = memshare::Segment::take_from_process(std::process::id(), fd) {
    ///     assert_eq!(taken.len(), 4096);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn take_from_process(pid: u32, fd: i32) -> Result<Segment> {
        Ok(Segment::from_object(Object::take_from_process(pid, fd)?))
    }
}

#[cfg(windows)]
impl Segment {
    /// Gives this segment to the running process `process` (any process
    /// handle with query access, such as a [`std::process::Child`]).
    /// Returns the value to deliver to it by any means (a pipe, a socket, a
    /// file); the receiver calls [`Segment::inherited_from`] with it. Then
    /// this process's broker `DuplicateHandle`s the section into exactly
    /// that process (checked by process id *and* creation time, so a
    /// process that reuses the id gets nothing), with this handle's access,
    /// not inheritable, and the receiver checks the handle it got.
    ///
    /// The value is a one-time token: once taken, it is spent; a value that
    /// is never taken keeps one handle in this process until it exits.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// // To this very process, for the example; normally a child or a
    /// // process opened with OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION).
    /// // SAFETY: -1 is the current-process pseudo-handle, always valid.
    /// let me = unsafe { std::os::windows::io::BorrowedHandle::borrow_raw(-1isize as _) };
    /// let value = segment.duplicate_into(&me)?;
    /// let copy = memshare::Segment::inherited_from("example", &value)?;
    /// assert_eq!(copy.len(), 4096);
    /// # Ok(()) }
    /// ```
    pub fn duplicate_into(&self, process: &impl std::os::windows::io::AsHandle) -> Result<String> {
        use std::os::windows::io::AsRawHandle;
        let raw = process.as_handle().as_raw_handle();
        let (handle, token, pid) = self.object().duplicate_into(raw)?;
        Ok(format_inherit_value(
            handle,
            token,
            self.object(),
            Some(pid),
        ))
    }
}

/// The magic at the start of every segment message: `MSHS`.
pub const MESSAGE_MAGIC: [u8; 4] = *b"MSHS";
/// The message format version this library writes and reads.
pub const MESSAGE_VERSION: u16 = 1;
/// The largest message payload, in bytes.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
const HEADER_LEN: usize = 12;

/// One entry of a segment message: what the sender claims about a descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageEntry {
    /// The key the receiver finds the segment under.
    pub key: String,
    /// The segment's name, for a named segment.
    pub name: Option<String>,
    /// The claimed size in bytes.
    pub len: u64,
    /// Whether the segment is claimed to be read-only.
    pub readonly: bool,
}

/// Encodes the payload of a segment message. All integers little-endian:
///
/// | bytes | field |
/// |---|---|
/// | 4 | magic `MSHS` |
/// | 2 | version, 1 |
/// | 2 | entry count, at most 253 (one descriptor each, in order) |
/// | 4 | total payload length in bytes, header included, at most 65536 |
///
/// then per entry: key length (1 byte, 1..=64), key; name length (1 byte,
/// 0 for anonymous, at most 30), name; flags (1 byte: bit 0 read-only, the
/// others zero); size (8 bytes).
///
/// ```
/// use memshare::{decode_message, encode_message, MessageEntry};
/// let entries = vec![MessageEntry { key: "a".into(), name: None, len: 4096, readonly: true }];
/// assert_eq!(decode_message(&encode_message(&entries).unwrap()).unwrap(), entries);
/// ```
pub fn encode_message(entries: &[MessageEntry]) -> Result<Vec<u8>> {
    if entries.len() > sys::MAX_FDS_PER_MESSAGE {
        return Err(Error::OutOfRange {
            object: "segment message".into(),
            detail: format!(
                "{} segments, at most {} fit in one message",
                entries.len(),
                sys::MAX_FDS_PER_MESSAGE
            ),
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() * 48);
    out.extend_from_slice(&MESSAGE_MAGIC);
    out.extend_from_slice(&MESSAGE_VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // total length, filled in below
    for entry in entries {
        validate_key(&entry.key)?;
        out.push(entry.key.len() as u8);
        out.extend_from_slice(entry.key.as_bytes());
        let name = entry.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            validate_name(name)?;
        }
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(u8::from(entry.readonly));
        out.extend_from_slice(&entry.len.to_le_bytes());
    }
    let total = out.len() as u32;
    out[8..12].copy_from_slice(&total.to_le_bytes());
    Ok(out)
}

/// How long the message that starts with `buf` is, once the header is in.
fn message_len(buf: &[u8]) -> Result<usize> {
    if buf.len() >= 4 && buf[..4] != MESSAGE_MAGIC {
        return Err(corrupt("bad magic: not a memshare segment message".into()));
    }
    if buf.len() < HEADER_LEN {
        return Ok(HEADER_LEN);
    }
    let total = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&total) {
        return Err(corrupt(format!("declared length {total} is out of range")));
    }
    Ok(total)
}

fn corrupt(reason: String) -> Error {
    Error::InvalidHandle {
        object: "segment message".into(),
        reason,
    }
}

/// Decodes and checks a segment message payload (format on
/// [`encode_message`]). Any inconsistency is an [`Error::InvalidHandle`].
pub fn decode_message(buf: &[u8]) -> Result<Vec<MessageEntry>> {
    if buf.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes: shorter than the header",
            buf.len()
        )));
    }
    if buf[..4] != MESSAGE_MAGIC {
        return Err(corrupt("bad magic: not a memshare segment message".into()));
    }
    let version = u16::from_le_bytes([buf[4], buf[5]]);
    if version != MESSAGE_VERSION {
        return Err(corrupt(format!(
            "version {version}, this library speaks {MESSAGE_VERSION}"
        )));
    }
    let count = usize::from(u16::from_le_bytes([buf[6], buf[7]]));
    if count > sys::MAX_FDS_PER_MESSAGE {
        return Err(corrupt(format!("{count} entries: too many")));
    }
    if message_len(buf)? != buf.len() {
        return Err(corrupt("declared length does not match the payload".into()));
    }
    let mut rest = &buf[HEADER_LEN..];
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            return Err(corrupt("payload ends in the middle of an entry".into()));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = usize::from(take(1)?[0]);
        let key = std::str::from_utf8(take(key_len)?)
            .map_err(|_| corrupt("a key is not UTF-8".into()))?
            .to_owned();
        validate_key(&key)?;
        let name_len = usize::from(take(1)?[0]);
        let name = std::str::from_utf8(take(name_len)?)
            .map_err(|_| corrupt("a name is not UTF-8".into()))?;
        let name = if name.is_empty() {
            None
        } else {
            validate_name(name)?;
            Some(name.to_owned())
        };
        let flags = take(1)?[0];
        if flags & !1 != 0 {
            return Err(corrupt(format!("unknown flags {flags:#x}")));
        }
        let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        if entries.iter().any(|e: &MessageEntry| e.key == key) {
            return Err(corrupt(format!("key {key:?} appears twice")));
        }
        entries.push(MessageEntry {
            key,
            name,
            len,
            readonly: flags & 1 != 0,
        });
    }
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} bytes after the last entry",
            rest.len()
        )));
    }
    Ok(entries)
}

/// Sends segments, each under a key, to the process at the other end of
/// `stream`, in one message (`SCM_RIGHTS`). At most 253 segments.
///
/// Each receiver becomes a holder of its own: a named segment stays alive
/// for it even if the sender drops it right after sending.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// # fn main() -> memshare::Result<()> {
/// let (a, b) = UnixStream::pair().unwrap();
/// let segment = memshare::Segment::create(4096)?;
/// segment.map(..)?.write_at(0, b"over the socket")?;
/// memshare::send_segments(&a, &[("data", &segment)])?;
/// let received = memshare::recv_segments(&b)?;
/// assert_eq!(received[0].0, "data");
/// let mut buf = [0; 15];
/// received[0].1.map_readonly(..)?.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"over the socket");
/// # Ok(()) }
/// ```
#[cfg(unix)]
pub fn send_segments(stream: &UnixStream, segments: &[(&str, &Segment)]) -> Result<()> {
    let entries: Vec<MessageEntry> = segments
        .iter()
        .map(|(key, segment)| MessageEntry {
            key: (*key).to_owned(),
            name: segment.name().map(str::to_owned),
            len: segment.len(),
            readonly: segment.is_readonly(),
        })
        .collect();
    let payload = encode_message(&entries)?;
    let given = segments
        .iter()
        .map(|(_, segment)| segment.object().handover())
        .collect::<Result<Vec<_>>>()?;
    sys::send_with_fds(stream, &payload, &given)
}

/// Receives the segments one [`send_segments`] call sent, with their keys,
/// in the order they were sent. Every descriptor is checked (see the module
/// docs); on any error, all received descriptors are closed.
#[cfg(unix)]
pub fn recv_segments(stream: &UnixStream) -> Result<Vec<(String, Segment)>> {
    let mut buf = Vec::new();
    let fds = sys::recv_with_fds(stream, &mut buf, message_len)?;
    let entries = decode_message(&buf)?;
    if fds.len() != entries.len() {
        return Err(corrupt(format!(
            "the message carries {} descriptors but describes {}: all closed",
            fds.len(),
            entries.len()
        )));
    }
    entries
        .into_iter()
        .zip(fds)
        .map(|(entry, fd)| {
            let origin = format!("received segment {:?}", entry.key);
            let claim = Claim {
                name: entry.name,
                len: entry.len,
                readonly: entry.readonly,
                identity: None,
            };
            let object = Object::from_received(fd, &claim, &origin)?;
            Ok((entry.key, Segment::from_object(object)))
        })
        .collect()
}
