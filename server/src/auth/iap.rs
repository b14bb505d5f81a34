//! Behind Google's Identity-Aware Proxy: every request carries `x-goog-iap-jwt-assertion`, an
//! ES256 JWT signed by Google. It is verified here — signature against the configured JWK set
//! (by `kid`), issuer, audience, expiry and issue time with a small skew — and never replaced by
//! the plain e-mail header IAP also sends. Roles come from a mapping of e-mails and domains.

use app::access::{Principal, Role, SignIn};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;

pub const ASSERTION_HEADER: &str = "x-goog-iap-jwt-assertion";
pub const GOOGLE_ISSUER: &str = "https://cloud.google.com/iap";
/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

pub struct Iap {
    audience: String,
    issuer: String,
    keys: HashMap<String, DecodingKey>,
    /// (exact e-mail, or `@domain`) → role; the exact e-mail wins.
    roles: Vec<(String, Role)>,
}

#[derive(Deserialize)]
struct Claims {
    email: String,
    iat: i64,
}

impl Iap {
    /// From the JWK set's JSON (Google publishes it at
    /// `https://www.gstatic.com/iap/verify/public_key-jwk`) and `ROLE=WHO` mappings.
    pub fn new(audience: &str, jwks_json: &str, roles: &[String]) -> Result<Iap, String> {
        if audience.trim().is_empty() {
            return Err("--iap-audience: give the audience IAP signs for (e.g. /projects/123/global/backendServices/456)".into());
        }
        let set: JwkSet = serde_json::from_str(jwks_json)
            .map_err(|e| format!("--iap-jwks: not a JWK set ({e})"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("--iap-jwks: key '{kid}' cannot verify ES256 ({e})"))?;
            keys.insert(kid, key);
        }
        if keys.is_empty() {
            return Err("--iap-jwks: the set has no keys".into());
        }
        let roles = roles
            .iter()
            .map(|m| {
                let (role, who) = m.split_once('=').ok_or_else(|| {
                    format!("--iap-role '{m}': write ROLE=EMAIL or ROLE=@DOMAIN, e.g. admin=alice@example.com")
                })?;
                let role = Role::from_key(role)
                    .filter(|r| *r != Role::Service)
                    .ok_or_else(|| format!("--iap-role '{m}': the role is viewer, operator or admin"))?;
                Ok((who.trim().to_lowercase(), role))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Iap {
            audience: audience.to_string(),
            issuer: GOOGLE_ISSUER.to_string(),
            keys,
            roles,
        })
    }

    /// The verified e-mail of an assertion, or why it is refused.
    pub fn verify(&self, assertion: &str, now: i64) -> Result<String, String> {
        let header = decode_header(assertion).map_err(|e| format!("not a JWT ({e})"))?;
        if header.alg != Algorithm::ES256 {
            return Err(format!("signed with {:?}, not ES256", header.alg));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| format!("signed with an unknown key '{kid}'"))?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&self.issuer]);
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        let claims = decode::<Claims>(assertion, key, &v)
            .map_err(|e| format!("refused ({e})"))?
            .claims;
        if claims.iat > now + LEEWAY_SECS as i64 {
            return Err("issued in the future".into());
        }
        Ok(claims.email.to_lowercase())
    }

    /// The principal for a verified e-mail, if the mapping gives it a role.
    pub fn principal(&self, email: &str) -> Option<Principal> {
        let domain = email.rsplit_once('@').map(|(_, d)| format!("@{d}"));
        let role = self
            .roles
            .iter()
            .find(|(who, _)| who == email)
            .or_else(|| {
                self.roles
                    .iter()
                    .find(|(who, _)| Some(who) == domain.as_ref())
            })
            .map(|(_, r)| *r)?;
        Some(Principal {
            name: email.to_string(),
            role,
            policies: vec![],
            via: SignIn::Iap,
        })
    }
}
