//! Which web pages may use the broker: a request that carries an `Origin`
//! header (a browser's WebSocket, `fetch`, `EventSource` or form post) is
//! served only if that origin is the server's own, or allowed with
//! `--cors-origin` (`*` allows every origin). Clients that send no `Origin`
//! (command-line tools, servers) are not affected.

/// The flag that allows an origin, for the refusal's text.
const FLAG: &str = "--cors-origin";

/// Whether a request from `origin` to the server at `host` (the `Host`
/// header) may be served, given the allowed origins; the refusal's text
/// otherwise.
///
/// ```
/// use mist_frontend::check_origin;
///
/// let allowed = vec!["https://app.example".to_string()];
/// assert!(check_origin(None, Some("broker:8080"), &allowed).is_ok(), "no Origin: not a browser");
/// assert!(check_origin(Some("https://app.example"), Some("broker:8080"), &allowed).is_ok());
/// assert!(check_origin(Some("http://broker:8080"), Some("broker:8080"), &allowed).is_ok(), "its own");
/// assert!(check_origin(Some("https://evil.example"), Some("broker:8080"), &allowed).is_err());
/// assert!(check_origin(Some("https://evil.example"), None, &["*".to_string()]).is_ok());
/// ```
pub fn check_origin(
    origin: Option<&str>,
    host: Option<&str>,
    allowed: &[String],
) -> Result<(), String> {
    let Some(origin) = origin.map(str::trim) else {
        return Ok(());
    };
    let listed = allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin));
    let own = host.is_some_and(|host| {
        let host = host.trim();
        ["http://", "https://"].iter().any(|scheme| {
            // `get`, not indexing: a header may cut a character in two.
            origin
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
                && origin
                    .get(scheme.len()..)
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })
    });
    if listed || own {
        return Ok(());
    }
    Err(format!(
        "origin {origin} is not allowed: start mist with {FLAG} {origin} to let its pages use the broker ({FLAG} '*' allows every origin)"
    ))
}
