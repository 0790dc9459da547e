//! One error type for the whole engine. Every message names the thing that is wrong
//! (a shape, a device, a file, a flag) and, where there is one, the fix.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// Shapes that do not fit an op: `op` is the op's name.
    Shape { op: &'static str, msg: String },
    /// A dtype the op does not accept.
    DType { op: &'static str, msg: String },
    /// Tensors on different devices, or an op not available on a device.
    Device { op: &'static str, msg: String },
    /// A backend could not be created or failed at run time (CUDA driver, emulator).
    Backend(String),
    /// An invalid argument value (a bad axis, a bad device string, a bad flag value).
    Invalid(String),
    /// A file could not be read or written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    pub fn dtype(op: &'static str, msg: impl Into<String>) -> Self {
        Error::DType {
            op,
            msg: msg.into(),
        }
    }
    pub fn device(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Device {
            op,
            msg: msg.into(),
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn backend(msg: impl Into<String>) -> Self {
        Error::Backend(msg.into())
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, msg } => write!(f, "shape error in {op}: {msg}"),
            Error::DType { op, msg } => write!(f, "dtype error in {op}: {msg}"),
            Error::Device { op, msg } => write!(f, "device error in {op}: {msg}"),
            Error::Backend(msg) => write!(f, "{msg}"),
            Error::Invalid(msg) => write!(f, "{msg}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
