//! The two message shapes on the wire: requests from clients, frames from the server.

use serde::{Deserialize, Serialize};

/// A client's request: `{"command": string, "tags": [string], "data": string}`.
///
/// `tags` and `data` are optional and unknown fields are ignored, as in the
/// original mist. A JSON `null` counts as absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Request {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Request {
    /// A request with a command and nothing else.
    pub fn new(command: impl Into<String>) -> Request {
        Request {
            command: command.into(),
            ..Request::default()
        }
    }

    /// Sets the tags.
    pub fn tags<I, S>(mut self, tags: I) -> Request
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the data.
    pub fn data(mut self, data: impl Into<String>) -> Request {
        self.data = Some(data.into());
        self
    }

    /// The request as one protocol line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a Request always serializes");
        line.push(b'\n');
        line
    }
}

/// A frame sent by the server: a reply to a command or a delivered publish.
///
/// Every frame has a `command`. A reply that reports a failure has `error`.
/// A `list` reply carries `subscriptions`, the same information as its `data`
/// string in a shape that survives tags containing `,` or ` `.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Message {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<Vec<Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
