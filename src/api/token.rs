//! `plumbline.v1.TokenService`: API tokens, made, listed and revoked by an
//! admin (the auth layer checks the role before a call gets here).

use std::sync::Arc;

use tonic::{Request, Response};

use super::Reply;
use super::convert::timestamp;
use crate::auth::{Role, Tokens};
use crate::domain::ApiToken;
use crate::engine::Error;
use crate::proto as pb;

/// `plumbline.v1.TokenService`.
#[derive(Clone)]
pub struct TokenApi(pub Arc<Tokens>);

/// A role from the wire; UNSPECIFIED and unknown values are refused.
pub fn role_from_pb(role: i32) -> Result<Role, Error> {
    match pb::TokenRole::try_from(role) {
        Ok(pb::TokenRole::Read) => Ok(Role::Read),
        Ok(pb::TokenRole::Write) => Ok(Role::Write),
        Ok(pb::TokenRole::Admin) => Ok(Role::Admin),
        _ => Err(Error::invalid("role", "is required: READ, WRITE or ADMIN")),
    }
}

fn role_to_pb(role: Role) -> pb::TokenRole {
    match role {
        Role::Read => pb::TokenRole::Read,
        Role::Write => pb::TokenRole::Write,
        Role::Admin => pb::TokenRole::Admin,
    }
}

/// A token without its secret (the hash stays in the server too).
pub fn token_to_pb(t: &ApiToken) -> pb::ApiToken {
    pb::ApiToken {
        id: t.id.clone(),
        name: t.name.clone(),
        role: role_to_pb(t.role) as i32,
        create_time: Some(timestamp(&t.create_time)),
        revoke_time: t.revoke_time.as_ref().map(timestamp),
    }
}

#[tonic::async_trait]
impl pb::token_service_server::TokenService for TokenApi {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Reply<pb::CreateTokenResponse> {
        let r = req.get_ref();
        let role = role_from_pb(r.role)?;
        let (token, secret) = self.0.create(&r.name, role).await?;
        tracing::info!(token = %token.name, id = %token.id, role = role.as_str(), "API token created");
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(token_to_pb(&token)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Reply<pb::ListTokensResponse> {
        let tokens = self.0.list(req.get_ref().include_revoked).await?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: tokens.iter().map(token_to_pb).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Reply<pb::RevokeTokenResponse> {
        let which = &req.get_ref().token;
        if which.is_empty() {
            return Err(Error::invalid("token", "is required: the token's id or name").into());
        }
        let token = self.0.revoke(which).await?;
        tracing::info!(token = %token.name, id = %token.id, "API token revoked");
        Ok(Response::new(pb::RevokeTokenResponse {
            token: Some(token_to_pb(&token)),
        }))
    }
}
