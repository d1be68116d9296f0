//! Inheritance: a segment for one child, and the value that names it
//! (format in the [module docs](super)).

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
/// assert_eq!(memshare::share::inherit_env_var("frames").unwrap(), "MEMSHARE_SEGMENT_FRAMES");
/// assert!(memshare::share::inherit_env_var("no spaces").is_err());
/// ```
pub fn inherit_env_var(key: &str) -> Result<String> {
    validate_key(key)?;
    Ok(format!("{INHERIT_ENV_PREFIX}{}", key.to_ascii_uppercase()))
}

/// Checks a key against the rules: 1 to 64 ASCII letters, digits and `_`;
/// the rule it breaks otherwise.
pub(super) fn check_key(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        Err("a key must not be empty")
    } else if key.len() > MAX_KEY_LEN {
        Err("a key must be at most 64 bytes long")
    } else if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Err("a key may only contain ASCII letters, digits and '_'")
    } else {
        Ok(())
    }
}

/// A key the caller gave: a broken rule is [`Error::InvalidInput`].
fn validate_key(key: &str) -> Result<()> {
    check_key(key).map_err(|reason| Error::InvalidInput {
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
        // A malformed value, as any other field's: not a name this process
        // chose.
        validate_name(name).map_err(|e| bad(format!("field \"name\": {e}")))?;
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
#[cfg(fuzzing)]
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
            return Err(Error::InvalidInput {
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

/// A segment prepared for one child that something other than
/// [`std::process::Command`] spawns (Python's `subprocess`, `posix_spawn`,
/// a C program): a descriptor to pass to the child, and the environment
/// variable and value that tell the child's [`Segment::inherited`] about it.
/// Made by [`Segment::offer_to_child`].
///
/// The descriptor is close-on-exec in this process, as every memshare
/// descriptor is: the spawner must keep it open in the child, at the same
/// number, and only there (`subprocess.Popen(..., pass_fds=[fd])` does
/// exactly that; so does `posix_spawn_file_actions_adddup2(fd, fd)`, which
/// clears close-on-exec in the child). Put [`ChildOffer::env_var`] =
/// [`ChildOffer::value`] in the child's environment, spawn, then drop the
/// offer: this process's copy of the descriptor is closed, the child's stays.
///
/// For a named segment the descriptor is a holder of its own (as with
/// [`CommandExt::share`]): the child counts as a holder from the moment the
/// offer is made until it drops the segment or dies; an offer dropped
/// without a child holds nothing.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// # #[cfg(unix)] {
/// use std::os::fd::{AsFd, AsRawFd};
/// let segment = memshare::Segment::create(4096)?;
/// let offer = segment.offer_to_child("frames")?;
/// assert_eq!(offer.env_var(), "MEMSHARE_SEGMENT_FRAMES");
/// let fd = offer.as_fd().as_raw_fd();
/// assert!(offer.value().starts_with(&format!("v1;handle={fd};")));
/// // spawn the child with `fd` kept open and the variable set, then:
/// drop(offer);
/// # }
/// # Ok(()) }
/// ```
#[cfg(unix)]
pub struct ChildOffer {
    var: String,
    value: String,
    given: Object,
}

#[cfg(unix)]
impl ChildOffer {
    /// The environment variable the child reads: `MEMSHARE_SEGMENT_<KEY>`.
    pub fn env_var(&self) -> &str {
        &self.var
    }

    /// The value to put in [`ChildOffer::env_var`] (format in the
    /// [`share`](crate::share) module docs).
    pub fn value(&self) -> &str {
        &self.value
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for ChildOffer {
    /// The descriptor the child must get, at this same number.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.given.fd()
    }
}

#[cfg(unix)]
impl std::fmt::Debug for ChildOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildOffer")
            .field("env_var", &self.var)
            .field("value", &self.value)
            .finish()
    }
}

#[cfg(unix)]
impl Segment {
    /// Prepares this segment for a child spawned by something other than a
    /// [`Command`] (see [`ChildOffer`]); with a `Command`, use
    /// [`CommandExt::share`]. Fails with [`Error::InvalidInput`] if `key` is
    /// not a valid key.
    pub fn offer_to_child(&self, key: &str) -> Result<ChildOffer> {
        let var = inherit_env_var(key)?;
        let given = self.object().handover()?;
        let id = given.identity()?;
        let value = format_inherit_value(given.raw() as u64, id, self.object(), None);
        Ok(ChildOffer { var, value, given })
    }
}

impl Segment {
    /// Takes the segment the parent shared under `key` with
    /// [`CommandExt::share`].
    ///
    /// Fails with [`Error::InvalidInput`], naming the key, if the key is
    /// not a valid key or nothing was shared under it (the variable is
    /// missing), and with [`Error::InvalidHandle`] if the value is malformed, if it was meant for another process (a
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
        let value = std::env::var(&var).map_err(|e| match e {
            // An unknown key: the caller asked for something nobody gave.
            std::env::VarError::NotPresent => Error::InvalidInput {
                object: origin.clone(),
                reason: "the variable is not set: no segment was shared under this key".into(),
            },
            std::env::VarError::NotUnicode(_) => Error::InvalidHandle {
                object: origin.clone(),
                reason: "the value is not valid UTF-8".into(),
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
