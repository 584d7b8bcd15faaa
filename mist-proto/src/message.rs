//! The two message shapes on the wire: requests from clients, frames from the server.

use bytes::Bytes;
use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;
use std::ops::Range;

/// A client's request: `{"command": string, "tags": [string], "data": string}`.
///
/// `tags` and `data` are optional and unknown fields are ignored, as in the
/// original mist. A JSON `null` counts as absent.
///
/// ```
/// use mist_proto::Request;
///
/// let line = Request::new("publish").tags(["a", "b"]).data("hi").to_line();
/// assert_eq!(line, b"{\"command\":\"publish\",\"tags\":[\"a\",\"b\"],\"data\":\"hi\"}\n");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// The tags it is about; a set, order and duplicates do not matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// The payload of a publish, or the token of `auth` and admin commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    /// Whether this is a publish line that was already the frame
    /// subscribers get, held by its data (see [`Request::frame`]).
    #[serde(skip)]
    pub(crate) canonical: bool,
}

/// Equal when command, tags and data are; how the line was decoded does not
/// matter.
impl PartialEq for Request {
    fn eq(&self, other: &Request) -> bool {
        self.command == other.command && self.tags == other.tags && self.data == other.data
    }
}

impl Eq for Request {}

impl Request {
    /// A request with a command and nothing else.
    pub fn new(command: impl Into<Command>) -> Request {
        Request {
            command: command.into(),
            tags: None,
            data: None,
            canonical: false,
        }
    }

    /// For a publish the client wrote exactly as the server delivers it
    /// (`{"command":"publish","tags":[...],"data":"..."}` with no escapes),
    /// that line as the frame, newline included: the decoder copied it once,
    /// and every subscriber is sent this copy. `None` for anything else; the
    /// frame is then built with [`crate::encode::publish`].
    pub fn frame(&self) -> Option<&Bytes> {
        match &self.data {
            Some(Data(Literal::InFrame(frame, ..))) if self.canonical => Some(frame),
            _ => None,
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
    pub fn data(mut self, data: impl AsRef<str>) -> Request {
        self.data = Some(Data::new(data.as_ref()));
        self
    }

    /// The request as one protocol line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a Request always serializes");
        line.push(b'\n');
        line
    }
}

/// The body of a publish made over HTTP: `{"tags": [...], "data": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Publication {
    /// The message's tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// The message's data.
    #[serde(default)]
    pub data: Option<Data>,
}

impl Publication {
    /// The `publish` request it stands for.
    pub fn into_request(self) -> Request {
        Request {
            command: Command::Publish,
            tags: self.tags,
            data: self.data,
            canonical: false,
        }
    }
}

/// A request's command. The built-in ones are told apart without allocating;
/// anything else is kept by name, so that it can be echoed in the error reply.
///
/// ```
/// use mist_proto::Command;
///
/// assert_eq!(Command::from("ping"), Command::Ping);
/// assert_eq!(Command::from("shout").as_str(), "shout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// Answer `pong`.
    Ping,
    /// Add a subscription.
    Subscribe,
    /// Remove a subscription.
    Unsubscribe,
    /// Deliver a message to every matching subscriber.
    Publish,
    /// Show this connection's subscriptions.
    List,
    /// Authenticate with the token in `data` (the first message on TCP).
    Auth,
    /// Admin: register the token in `data` with `tags`.
    Register,
    /// Admin: remove the token in `data`.
    Unregister,
    /// Admin: add `tags` to the token in `data`.
    Set,
    /// Admin: remove `tags` from the token in `data`.
    Unset,
    /// Admin: show the tags of the token in `data`.
    Tags,
    /// How many connections and subscribers the server has.
    Who,
    /// Every subscribed tag set across all connections (admin-only when
    /// authentication is on).
    Listall,
    /// Anything else: a custom command, or an unknown one.
    Other(String),
}

impl Command {
    /// The command's name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Command::Ping => "ping",
            Command::Subscribe => "subscribe",
            Command::Unsubscribe => "unsubscribe",
            Command::Publish => "publish",
            Command::List => "list",
            Command::Auth => "auth",
            Command::Register => "register",
            Command::Unregister => "unregister",
            Command::Set => "set",
            Command::Unset => "unset",
            Command::Tags => "tags",
            Command::Who => "who",
            Command::Listall => "listall",
            Command::Other(name) => name,
        }
    }

    fn builtin(name: &str) -> Option<Command> {
        Some(match name {
            "ping" => Command::Ping,
            "subscribe" => Command::Subscribe,
            "unsubscribe" => Command::Unsubscribe,
            "publish" => Command::Publish,
            "list" => Command::List,
            "auth" => Command::Auth,
            "register" => Command::Register,
            "unregister" => Command::Unregister,
            "set" => Command::Set,
            "unset" => Command::Unset,
            "tags" => Command::Tags,
            "who" => Command::Who,
            "listall" => Command::Listall,
            _ => return None,
        })
    }
}

impl From<&str> for Command {
    fn from(name: &str) -> Command {
        Command::builtin(name).unwrap_or_else(|| Command::Other(name.to_string()))
    }
}

impl From<String> for Command {
    fn from(name: String) -> Command {
        Command::builtin(&name).unwrap_or(Command::Other(name))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Command, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, name: &str) -> Result<Command, E> {
                Ok(Command::from(name))
            }
            fn visit_string<E>(self, name: String) -> Result<Command, E> {
                Ok(Command::from(name))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// A message's data, kept as the JSON string literal the client sent.
///
/// ```
/// use mist_proto::Data;
///
/// let data = Data::new("two\nlines");
/// assert_eq!(data.json(), r#""two\nlines""#);
/// assert_eq!(data.to_text(), "two\nlines");
/// ```
///
/// A published message is forwarded with its data exactly as written, so the
/// server never unescapes and re-escapes it. The literal was validated by the
/// JSON parser, so it cannot contain a raw newline or break the framing.
#[derive(Clone)]
pub struct Data(Literal);

#[derive(Clone)]
enum Literal {
    /// Decoded by serde.
    Owned(Box<RawValue>),
    /// Inside the frame of a publish taken by the fast path, which checked
    /// that it is valid UTF-8 and a plain string literal.
    InFrame(Bytes, u32, u32),
}

impl Data {
    /// Data holding `text`.
    pub fn new(text: &str) -> Data {
        let literal = serde_json::to_string(text).expect("a string always serializes");
        let raw = RawValue::from_string(literal).expect("a serialized string is valid JSON");
        Data(Literal::Owned(raw))
    }

    /// The literal at `range` of `frame`, which the caller checked.
    pub(crate) fn in_frame(frame: Bytes, range: Range<usize>) -> Data {
        // A line is far shorter than 4 GiB; anything else is an empty literal.
        let start = u32::try_from(range.start).unwrap_or(0);
        let end = u32::try_from(range.end).unwrap_or(0);
        Data(Literal::InFrame(frame, start, end))
    }

    /// The JSON string literal, quotes included.
    pub fn json(&self) -> &str {
        match &self.0 {
            Literal::Owned(raw) => raw.get(),
            // Checked when it was taken; checking again cannot fail.
            Literal::InFrame(frame, start, end) => frame
                .get(*start as usize..*end as usize)
                .and_then(|literal| std::str::from_utf8(literal).ok())
                .unwrap_or("\"\""),
        }
    }

    /// The text the literal stands for.
    pub fn to_text(&self) -> String {
        serde_json::from_str(self.json()).unwrap_or_default()
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

/// Equal when they stand for the same text, however it was escaped.
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.json() == other.json() || self.to_text() == other.to_text()
    }
}

impl Eq for Data {}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Literal::Owned(raw) => raw.serialize(serializer),
            Literal::InFrame(..) => match RawValue::from_string(self.json().to_owned()) {
                Ok(raw) => raw.serialize(serializer),
                Err(e) => Err(serde::ser::Error::custom(e)),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Data, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let kind = match raw.get().as_bytes().first() {
            Some(b'"') => {
                // The parser checked the literal's framing, not what its escapes
                // stand for: a lone surrogate such as "\ud800" would pass and then
                // break every strict client it is forwarded to.
                if raw.get().contains('\\') {
                    if let Err(e) = serde_json::from_str::<String>(raw.get()) {
                        let what = crate::decoder::describe(&e);
                        return Err(D::Error::custom(format_args!(
                            "data is not a valid string: {what}"
                        )));
                    }
                }
                return Ok(Data(Literal::Owned(raw)));
            }
            Some(b'[') => Unexpected::Seq,
            Some(b'{') => Unexpected::Map,
            Some(b't' | b'f') => Unexpected::Other("boolean"),
            _ => Unexpected::Other("number"),
        };
        Err(D::Error::invalid_type(kind, &"a string"))
    }
}

/// A frame sent by the server: a reply to a command or a delivered publish.
///
/// ```
/// use mist_proto::Message;
///
/// let frame: Message = serde_json::from_str(r#"{"command":"ping","data":"pong"}"#).unwrap();
/// assert_eq!(frame.data.as_deref(), Some("pong"));
/// assert!(frame.error.is_none());
/// ```
///
/// Every frame has a `command`. A reply that reports a failure has `error`.
/// A `list` reply carries `subscriptions`, the same information as its `data`
/// string in a shape that survives tags containing `,` or ` `.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Message {
    /// The command replied to, or `publish` for a delivery.
    pub command: String,
    /// A delivery's tags, or those of the command replied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// A delivery's data, or a reply's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// In a `list` or `listall` reply: the subscriptions as tag lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<Vec<Vec<String>>>,
    /// In a `who` reply: connections open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    /// In a `who` reply: connections holding at least one subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribers: Option<usize>,
    /// Why the command failed; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keeps_the_literal_and_compares_by_text() {
        let sent: Request =
            serde_json::from_str(r#"{"command":"publish","data":"\u0041\n"}"#).unwrap();
        let data = sent.data.unwrap();
        assert_eq!(data.json(), r#""\u0041\n""#, "forwarded as written");
        assert_eq!(data.to_text(), "A\n");
        assert_eq!(data, Data::new("A\n"));
    }

    #[test]
    fn data_with_an_escape_that_is_no_character_is_refused() {
        let sent = serde_json::from_str::<Request>(r#"{"command":"publish","data":"a\ud800"}"#);
        let error = sent.unwrap_err().to_string();
        assert!(
            error.starts_with("data is not a valid string: unexpected end of hex escape at"),
            "{error}"
        );
    }

    #[test]
    fn commands_round_trip_by_name() {
        for name in [
            "ping",
            "subscribe",
            "unsubscribe",
            "publish",
            "list",
            "Ping",
            "other",
        ] {
            let command = Command::from(name);
            assert_eq!(command.as_str(), name);
            assert_eq!(
                serde_json::to_string(&command).unwrap(),
                format!("\"{name}\"")
            );
        }
        assert_eq!(
            Command::from("PING"),
            Command::Other("PING".into()),
            "case-sensitive"
        );
    }
}
