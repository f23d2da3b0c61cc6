//! Cookie attributes in exactly one place. In Production cookies carry `Secure` and the
//! `__Host-` prefix (which browsers only accept with Secure, Path=/ and no Domain, so a
//! sibling subdomain cannot plant or overwrite them).

use axum_extra::extract::cookie::{Cookie, SameSite};

#[derive(Debug, Clone, Copy)]
pub struct CookieNames {
    pub secure: bool,
    /// The session token.
    pub session: &'static str,
    /// The anonymous nonce the sign-in form's CSRF token is bound to.
    pub login: &'static str,
    /// A browser's proof of an earlier sign-in (auth::device), for login throttling.
    pub device: &'static str,
}

impl CookieNames {
    pub fn new(secure: bool) -> CookieNames {
        if secure {
            CookieNames {
                secure,
                session: "__Host-tau_session",
                login: "__Host-tau_login",
                device: "__Host-tau_device",
            }
        } else {
            CookieNames { secure, session: "tau_session", login: "tau_login", device: "tau_device" }
        }
    }

    /// A browser-session cookie (no Max-Age: closing the browser ends it; the server enforces
    /// the real timeouts).
    pub fn build(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build((name, value)).path("/").http_only(true).same_site(SameSite::Lax).secure(self.secure).build()
    }

    /// A cookie kept across browser restarts for `max_age`.
    pub fn persistent(&self, name: &'static str, value: String, max_age: time::Duration) -> Cookie<'static> {
        let mut c = self.build(name, value);
        c.set_max_age(max_age);
        c
    }

    /// A cookie that deletes `name`; it repeats the attributes, or the browser keeps the original.
    pub fn removal(&self, name: &'static str) -> Cookie<'static> {
        let mut c = self.build(name, String::new());
        c.make_removal();
        c
    }
}
