"""Exceptions mirror the Rust errors: classes, built-in bases, messages."""

import pytest

import memshare


@pytest.mark.parametrize(
    "cls, builtin",
    [
        ("NotFound", FileNotFoundError),
        ("AlreadyExists", FileExistsError),
        ("PermissionDenied", PermissionError),
        ("TimedOut", TimeoutError),
        ("InvalidName", ValueError),
        ("OutOfRange", ValueError),
        ("InvalidInput", ValueError),
        ("TooLarge", ValueError),
        ("Disconnected", BrokenPipeError),
        ("NoSpace", MemoryError),
    ],
)
def test_classes_derive_from_error_and_the_builtin(cls, builtin):
    c = getattr(memshare, cls)
    assert issubclass(c, memshare.Error) and issubclass(c, builtin)
    assert c.__module__ == "memshare" and c.__doc__


def test_every_kind_exists():
    for cls in ["Corrupted", "NotAChannel", "NotAService", "LimitReached", "AlreadyAttached",
                "NoResponse", "Truncated", "Unsupported", "InvalidHandle", "NotSharedMemory",
                "Misaligned", "IoError"]:
        assert issubclass(getattr(memshare, cls), memshare.Error)


def test_messages_and_attributes_are_the_rust_ones(name):
    n = name()
    with pytest.raises(memshare.NotFound) as e:
        memshare.Segment.open(n)
    assert str(e.value) == f'segment "{n}" not found'
    assert e.value.kind == "not_found" and e.value.name == n
    seg = memshare.Segment.create_named(n, 4096)
    with pytest.raises(FileExistsError) as e:
        memshare.Segment.create_named(n, 4096)
    assert str(e.value) == f'segment "{n}" already exists' and e.value.kind == "already_exists"
    with pytest.raises(memshare.InvalidName) as e:
        memshare.Segment.open("no/slash")
    assert "invalid segment name" in str(e.value)
    with pytest.raises(ValueError):
        memshare.validate_name("")
    memshare.validate_name("fine-name_1.x")
    assert memshare.MAX_NAME_LEN > 0
    seg.close()


def test_version():
    assert memshare.__version__.count(".") == 2
