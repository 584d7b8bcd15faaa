//! Where a client over WebSocket, SSE or HTTP gives its token: the
//! `X-Auth-Token` header or the `x-auth-token` query parameter (the original
//! mist's two ways; the parameter's name in any case).

/// The token of a request, from its `X-Auth-Token` header value or, failing
/// that, its raw query string.
pub fn request_token(header: Option<&str>, query: Option<&str>) -> Option<String> {
    if let Some(token) = header {
        return Some(token.trim().to_string());
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key.eq_ignore_ascii_case("x-auth-token"))
        .map(|(_, value)| value.into_owned())
}

/// Why a client that gives its token out of band was refused, in the terms
/// of its transport: it has no `auth` command to send.
pub fn refusal_text(error: &mist_engine::Error) -> String {
    match error {
        mist_engine::Error::AuthRequired => {
            "authentication required: send the token in the X-Auth-Token header or the x-auth-token query parameter"
                .to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_first_then_query_in_any_case() {
        assert_eq!(
            request_token(Some(" abc "), Some("x-auth-token=q")),
            Some("abc".into())
        );
        assert_eq!(
            request_token(None, Some("a=1&X-Auth-Token=t%2Fo+k")),
            Some("t/o k".into())
        );
        assert_eq!(
            request_token(None, Some("x-auth-token=%zz%4")),
            Some("%zz%4".into())
        );
        assert_eq!(request_token(None, Some("other=1")), None);
        assert_eq!(request_token(None, None), None);
    }
}
