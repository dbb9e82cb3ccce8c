//! The one error type of the hardware layer, and its stable numeric codes.

use std::fmt;

/// The kind of an [`Error`], with a number that never changes.
///
/// The numbers are part of the C ABI (`anyaccel.h` returns them as status codes, and vendor
/// plugins return them from `anyaccel_plugin.h`). They are fixed forever: a new kind gets a new
/// number at the end, and no number is ever reused. `0` is success and is not an `ErrorCode`.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// An argument was wrong: a shape, a dtype, a size, a handle, a null pointer.
    InvalidArgument = 1,
    /// A range (view, offset, index) fell outside the memory it refers to.
    OutOfBounds = 2,
    /// The device does not offer this op, dtype, dialect or feature.
    Unsupported = 3,
    /// A backend, its vendor library or its device could not be used.
    Unavailable = 4,
    /// Memory could not be allocated.
    OutOfMemory = 5,
    /// A kernel failed to compile; the message holds the compiler's log.
    CompileFailed = 6,
    /// A kernel launch or a queued command failed.
    LaunchFailed = 7,
    /// The device stopped working.
    DeviceLost = 8,
    /// A wait ran past its limit.
    Timeout = 9,
    /// A plugin or caller was built against an incompatible ABI version.
    AbiMismatch = 10,
    /// A bug in anyaccel or a backend: it should never happen.
    Internal = 11,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::InvalidArgument,
        ErrorCode::OutOfBounds,
        ErrorCode::Unsupported,
        ErrorCode::Unavailable,
        ErrorCode::OutOfMemory,
        ErrorCode::CompileFailed,
        ErrorCode::LaunchFailed,
        ErrorCode::DeviceLost,
        ErrorCode::Timeout,
        ErrorCode::AbiMismatch,
        ErrorCode::Internal,
    ];

    /// The stable number of this code.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code with this number, if there is one.
    pub fn from_i32(n: i32) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_i32() == n)
    }

    /// A short lower-case name, e.g. `invalid argument`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid argument",
            ErrorCode::OutOfBounds => "out of bounds",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::OutOfMemory => "out of memory",
            ErrorCode::CompileFailed => "compile failed",
            ErrorCode::LaunchFailed => "launch failed",
            ErrorCode::DeviceLost => "device lost",
            ErrorCode::Timeout => "timeout",
            ErrorCode::AbiMismatch => "ABI mismatch",
            ErrorCode::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error from anyaccel: a stable [`ErrorCode`] and a message that says what was wrong and
/// what was expected, e.g. `matmul: a is 64x33 but b is 32x17: inner dimensions must match`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    code: ErrorCode,
    message: String,
}

/// `Result` with anyaccel's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! constructors {
    ($($fn_name:ident => $code:ident),* $(,)?) => {
        $(
            #[doc = concat!("An error with code [`ErrorCode::", stringify!($code), "`].")]
            pub fn $fn_name(message: impl Into<String>) -> Error {
                Error::new(ErrorCode::$code, message)
            }
        )*
    };
}

impl Error {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    constructors! {
        invalid_argument => InvalidArgument,
        out_of_bounds => OutOfBounds,
        unsupported => Unsupported,
        unavailable => Unavailable,
        out_of_memory => OutOfMemory,
        compile_failed => CompileFailed,
        launch_failed => LaunchFailed,
        device_lost => DeviceLost,
        timeout => Timeout,
        abi_mismatch => AbiMismatch,
        internal => Internal,
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message, without the code's name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context: ` put before its message.
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            code: self.code,
            message: format!("{context}: {}", self.message),
        }
    }
}

/// Why a backend could not be used: the loader's own words (the `dlopen` error, the missing
/// symbol, the version found), so that a user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unavailable: {reason}")]
pub struct Unavailable {
    /// The reason, e.g. `libOpenCL.so.1: cannot open shared object file: No such file or directory`.
    pub reason: String,
}

impl Unavailable {
    /// An `Unavailable` with this reason.
    pub fn new(reason: impl Into<String>) -> Unavailable {
        Unavailable {
            reason: reason.into(),
        }
    }
}

impl From<Unavailable> for Error {
    fn from(u: Unavailable) -> Error {
        Error::unavailable(u.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let numbers: Vec<i32> = ErrorCode::ALL.iter().map(|c| c.as_i32()).collect();
        assert_eq!(numbers, (1..=11).collect::<Vec<_>>());
        assert_eq!(ErrorCode::from_i32(10), Some(ErrorCode::AbiMismatch));
        assert_eq!(ErrorCode::from_i32(0), None);
        assert_eq!(ErrorCode::from_i32(12), None);
    }

    #[test]
    fn display_has_code_and_message() {
        let e =
            Error::invalid_argument("matmul: a is 2x3 but b is 4x5: inner dimensions must match");
        assert_eq!(
            e.to_string(),
            "invalid argument: matmul: a is 2x3 but b is 4x5: inner dimensions must match"
        );
        assert_eq!(
            e.clone().context("graph").message(),
            "graph: matmul: a is 2x3 but b is 4x5: inner dimensions must match"
        );
    }
}
