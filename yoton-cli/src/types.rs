//! The message types of `--type`, and how each is written on the command line:
//!
//! | type | MESSAGE / VALUE / input line | output line |
//! |---|---|---|
//! | `txt` | the text itself | the text itself |
//! | `bin` | base64 (standard alphabet, padded) | base64 (standard alphabet, padded) |
//! | `obj` | JSON (see [`crate::json`]) | compact JSON |

use base64::Engine as _;
use yoton::{Binary, MessageType, Object, Text};

use crate::error::{CliError, Result};
use crate::json;

/// `--type`: the message type of the channel (it is part of the slot name, so both
/// ends must use the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MsgType {
    /// UTF-8 text; one message per argument or input line.
    #[default]
    Txt,
    /// Bytes, written as base64 (standard alphabet, padded) on the command line and
    /// in the output.
    Bin,
    /// Yoton objects (None, bool, int, float, str, list, tuple, dict), written as
    /// JSON.
    Obj,
}

/// A message type with a command-line form.
pub trait CliType: MessageType {
    /// Parse one MESSAGE (or input line).
    fn parse(text: &str) -> Result<Self::Message>;
    /// One output line (without the newline).
    fn show(m: Self::Message) -> String;
}

impl CliType for Text {
    fn parse(text: &str) -> Result<String> {
        Ok(text.to_owned())
    }
    fn show(m: String) -> String {
        m
    }
}

impl CliType for Binary {
    fn parse(text: &str) -> Result<bytes::Bytes> {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(bytes::Bytes::from)
            .map_err(|e| CliError::Input(format!("not valid base64 ({e}): {text}")))
    }
    fn show(m: bytes::Bytes) -> String {
        base64::engine::general_purpose::STANDARD.encode(&m)
    }
}

impl CliType for Object {
    fn parse(text: &str) -> Result<yoton::Value> {
        json::parse(text, "MESSAGE")
    }
    fn show(m: yoton::Value) -> String {
        json::to_line(&m)
    }
}

/// Run `$body` with `$t` bound to the message type chosen by `$ty`.
macro_rules! with_type {
    ($ty:expr, $t:ident => $body:expr) => {
        match $ty {
            $crate::types::MsgType::Txt => {
                type $t = yoton::Text;
                $body
            }
            $crate::types::MsgType::Bin => {
                type $t = yoton::Binary;
                $body
            }
            $crate::types::MsgType::Obj => {
                type $t = yoton::Object;
                $body
            }
        }
    };
}
pub(crate) use with_type;
