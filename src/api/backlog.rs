//! `plumbline.v1.BacklogService`: backlog items and their links to
//! hypotheses.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use std::collections::HashSet;

use prost_types::FieldMask;

use super::Reply;
use super::convert::{self, Check};
use super::mask::{MaskField, fields_to_update};
use super::page::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageToken};
use crate::domain::{self, Item};
use crate::engine::ItemFilter;
use crate::engine::{Engine, Error, LinkFilter, link_order_key, quote};
use crate::proto as pb;

/// Most items or keys one batch call takes.
const MAX_BATCH: usize = 1000;

/// `plumbline.v1.BacklogService`.
#[derive(Clone)]
pub struct BacklogApi(
    pub Arc<Engine>,
    /// Largest encoded `ListItems` response, in bytes
    /// (`[limits] max_response_bytes`).
    pub usize,
);

impl BacklogApi {
    /// An item as a read shows it: with its removal, if its tracker no
    /// longer returns it.
    fn shown(&self, it: &Item) -> pb::Item {
        convert::item_with_removal_to_pb(it, self.0.removal(&it.key()).as_ref())
    }
}

#[tonic::async_trait]
impl pb::backlog_service_server::BacklogService for BacklogApi {
    async fn upsert_items(
        &self,
        req: Request<pb::UpsertItemsRequest>,
    ) -> Reply<pb::UpsertItemsResponse> {
        let r = req.into_inner();
        if r.items.is_empty() {
            return Err(Error::invalid("items", "at least one item is required").into());
        }
        if r.items.len() > MAX_BATCH {
            return Err(
                Error::invalid("items", format!("at most {MAX_BATCH} items per call")).into(),
            );
        }
        let (items, counts) = match item_mask(r.update_mask.as_ref())? {
            None => self.0.upsert_items(whole_items(&r.items)?).await?,
            Some(fields) => {
                let keys = item_keys(&r.items)?;
                self.0
                    .upsert_items_merged(&keys, |stored| merge_items(&r.items, stored, &fields))
                    .await?
            }
        };
        Ok(Response::new(pb::UpsertItemsResponse {
            items: items.iter().map(convert::item_to_pb).collect(),
            created_count: counts.created as i32,
            updated_count: counts.updated as i32,
            unchanged_count: counts.unchanged as i32,
        }))
    }

    async fn get_item(&self, req: Request<pb::GetItemRequest>) -> Reply<pb::GetItemResponse> {
        let key = &req.get_ref().key;
        if key.is_empty() {
            return Err(Error::invalid("key", "is required").into());
        }
        let mut items = self.0.get_items(std::slice::from_ref(key)).await?;
        Ok(Response::new(pb::GetItemResponse {
            item: items.pop().as_ref().map(|it| self.shown(it)),
        }))
    }

    async fn batch_get_items(
        &self,
        req: Request<pb::BatchGetItemsRequest>,
    ) -> Reply<pb::BatchGetItemsResponse> {
        let keys = &req.get_ref().keys;
        if keys.len() > MAX_BATCH {
            return Err(
                Error::invalid("keys", format!("at most {MAX_BATCH} keys per call")).into(),
            );
        }
        if let Some(i) = keys.iter().position(String::is_empty) {
            return Err(Error::invalid(format!("keys[{i}]"), "must not be empty").into());
        }
        let items = self.0.get_items(keys).await?;
        let response = pb::BatchGetItemsResponse {
            items: items.iter().map(|it| self.shown(it)).collect(),
        };
        let bytes = prost::Message::encoded_len(&response);
        if items.len() > 1 && bytes > self.1 {
            return Err(Status::resource_exhausted(format!(
                "the {} items asked for come to {bytes} bytes, more than one response may carry ({} bytes, [limits] max_response_bytes); ask for fewer keys",
                items.len(),
                self.1
            )));
        }
        Ok(Response::new(response))
    }

    async fn list_items(&self, req: Request<pb::ListItemsRequest>) -> Reply<pb::ListItemsResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let mut c = Check::new("");
        let state = convert::item_state_from_pb(r.state, &mut c, "state");
        c.finish(())?;
        let fingerprint = format!(
            "ListItems|{}|{}|{}|{}",
            r.source_id, r.state, r.label, r.include_removed
        );
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let filter = ItemFilter {
            source_id: (!r.source_id.is_empty()).then(|| r.source_id.clone()),
            state,
            label: (!r.label.is_empty()).then(|| r.label.clone()),
            include_removed: r.include_removed,
        };
        let after = token.map(|t| t.k);
        // Room for the page token, which carries the filter and a key.
        let budget = self.1.saturating_sub(2 * fingerprint.len() + 1024);
        let items = self
            .0
            .list_items(&filter, after.as_deref(), size + 1, budget)
            .await?;
        // The page ends at `size` items or before the item that would take
        // the encoded response past the bound; the first item always fits.
        let mut page = Vec::new();
        let mut bytes = 0usize;
        for it in items.iter().take(size) {
            let p = self.shown(it);
            let len = prost::encoding::message::encoded_len(1, &p);
            if !page.is_empty() && bytes + len > budget {
                break;
            }
            bytes += len;
            page.push(p);
        }
        // More follow if some were left out, or if the store stopped at the
        // byte bound before the count.
        let stopped_at_bytes =
            items.len() <= size && items.iter().map(Item::text_len).sum::<usize>() >= budget;
        let next = match page.len().checked_sub(1).map(|i| &items[i]) {
            Some(last) if page.len() < items.len() || stopped_at_bytes => PageToken {
                q: fingerprint.clone(),
                k: last.key(),
                ..Default::default()
            }
            .encode(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListItemsResponse {
            items: page,
            next_page_token: next,
        }))
    }

    async fn link_item(&self, req: Request<pb::LinkItemRequest>) -> Reply<pb::LinkItemResponse> {
        let r = req.into_inner();
        let mut c = Check::new("");
        if r.item_key.is_empty() {
            c.fail("item_key", "is required");
        }
        c.id("hypothesis_id", &r.hypothesis_id);
        let contribution = if r.contribution == 0.0 {
            1.0
        } else {
            r.contribution
        };
        c.unit_interval("contribution", contribution, false);
        c.text("rationale", &r.rationale, false, 1 << 16);
        c.finish(())?;
        let link = self
            .0
            .link_item(&r.item_key, &r.hypothesis_id, contribution, r.rationale)
            .await?;
        Ok(Response::new(pb::LinkItemResponse {
            link: Some(convert::link_to_pb(&link)),
        }))
    }

    async fn unlink_item(
        &self,
        req: Request<pb::UnlinkItemRequest>,
    ) -> Reply<pb::UnlinkItemResponse> {
        let r = req.get_ref();
        let mut c = Check::new("");
        if r.item_key.is_empty() {
            c.fail("item_key", "is required");
        }
        c.id("hypothesis_id", &r.hypothesis_id);
        c.finish(())?;
        self.0.unlink_item(&r.item_key, &r.hypothesis_id).await?;
        Ok(Response::new(pb::UnlinkItemResponse {}))
    }

    async fn list_links(&self, req: Request<pb::ListLinksRequest>) -> Reply<pb::ListLinksResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let fingerprint = format!("ListLinks|{}|{}", r.item_key, r.hypothesis_id);
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let filter = LinkFilter {
            item_key: (!r.item_key.is_empty()).then_some(r.item_key.as_str()),
            hypothesis_id: (!r.hypothesis_id.is_empty()).then_some(r.hypothesis_id.as_str()),
        };
        let (page, next) = page::paginate(
            |after, limit| self.0.list_links(&filter, after, limit),
            |l| link_order_key(&l.item_key, &l.hypothesis_id),
            token,
            &fingerprint,
            size,
        );
        Ok(Response::new(pb::ListLinksResponse {
            links: page.iter().map(convert::link_to_pb).collect(),
            next_page_token: next,
        }))
    }
}

/// The items of an upsert without a mask: each replaces the stored one
/// whole. A key twice in one batch is refused, since which one would win
/// is not what the caller meant.
fn whole_items(items: &[pb::Item]) -> crate::engine::Result<Vec<Item>> {
    let mut out: Vec<Item> = Vec::with_capacity(items.len());
    let mut violations = Vec::new();
    let mut seen = HashSet::new();
    for (i, p) in items.iter().enumerate() {
        let mut c = Check::new(format!("items[{i}]"));
        if let Some(it) = convert::item_from_pb(p, &mut c) {
            if seen.insert(it.key()) {
                out.push(it);
            } else {
                c.fail(
                    "external_id",
                    format!("{} appears twice in this batch", quote(&it.key())),
                );
            }
        }
        violations.extend(c.violations);
    }
    if violations.is_empty() {
        Ok(out)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// The keys of an upsert with a mask, checked before the stored items are
/// read: each item must say which it is, once.
fn item_keys(items: &[pb::Item]) -> crate::engine::Result<Vec<String>> {
    let mut keys = Vec::with_capacity(items.len());
    let mut violations = Vec::new();
    let mut seen = HashSet::new();
    for (i, p) in items.iter().enumerate() {
        let mut c = Check::new(format!("items[{i}]"));
        c.id("source_id", &p.source_id);
        convert::check_external_id(&p.external_id, &mut c);
        let key = domain::item_key(&p.source_id, &p.external_id);
        if c.violations.is_empty() && !seen.insert(key.clone()) {
            c.fail(
                "external_id",
                format!("{} appears twice in this batch", quote(&key)),
            );
        }
        violations.extend(c.violations);
        keys.push(key);
    }
    if violations.is_empty() {
        Ok(keys)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// The items an upsert with a mask writes: each stored item with the
/// fields the mask names taken from the request, or a new item made of
/// those fields alone. The result is checked as a whole item, so a mask
/// cannot store what a full upsert would refuse.
fn merge_items(
    incoming: &[pb::Item],
    stored: Vec<Option<Item>>,
    fields: &[ItemField],
) -> crate::engine::Result<Vec<Item>> {
    let mut out = Vec::with_capacity(incoming.len());
    let mut violations = Vec::new();
    for (i, (p, before)) in incoming.iter().zip(stored).enumerate() {
        let mut c = Check::new(format!("items[{i}]"));
        let mut merged = match &before {
            Some(it) => convert::item_to_pb(it),
            None => pb::Item {
                source_id: p.source_id.clone(),
                external_id: p.external_id.clone(),
                ..Default::default()
            },
        };
        merged.key = p.key.clone();
        for f in fields {
            copy_item_field(&mut merged, p, *f);
        }
        if before.is_none() && !fields.contains(&ItemField::Title) {
            c.fail(
                "title",
                format!(
                    "{} does not exist yet, and a new item needs a title: add \"title\" to update_mask and set it",
                    quote(&domain::item_key(&p.source_id, &p.external_id))
                ),
            );
        } else if let Some(it) = convert::item_from_pb(&merged, &mut c) {
            out.push(it);
        }
        violations.extend(c.violations);
    }
    if violations.is_empty() {
        Ok(out)
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// The fields of an Item that an upsert with a mask can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemField {
    Title,
    Body,
    Url,
    State,
    Labels,
    Estimate,
    ParentKey,
    CreateTime,
    UpdateTime,
    CloseTime,
}

impl MaskField for ItemField {
    const PATHS: &'static [(&'static str, Self)] = &[
        ("title", ItemField::Title),
        ("body", ItemField::Body),
        ("url", ItemField::Url),
        ("state", ItemField::State),
        ("labels", ItemField::Labels),
        ("estimate", ItemField::Estimate),
        ("parent_key", ItemField::ParentKey),
        ("create_time", ItemField::CreateTime),
        ("update_time", ItemField::UpdateTime),
        ("close_time", ItemField::CloseTime),
    ];
}

/// The fields an upsert's mask names, or `None` for no mask (or an empty
/// one): then every item is replaced whole, as before masks existed (see
/// `UpsertItemsRequest.update_mask` for why this differs from the Update
/// RPCs). Unknown paths are INVALID_ARGUMENT on `update_mask`.
fn item_mask(mask: Option<&FieldMask>) -> crate::engine::Result<Option<Vec<ItemField>>> {
    match mask {
        Some(m) if !m.paths.is_empty() => {
            // With paths given, whether a field is set does not matter.
            fields_to_update(&(), Some(m), |_, _: ItemField| true).map(Some)
        }
        _ => Ok(None),
    }
}

fn copy_item_field(p: &mut pb::Item, i: &pb::Item, f: ItemField) {
    match f {
        ItemField::Title => p.title = i.title.clone(),
        ItemField::Body => p.body = i.body.clone(),
        ItemField::Url => p.url = i.url.clone(),
        ItemField::State => p.state = i.state,
        ItemField::Labels => p.labels = i.labels.clone(),
        ItemField::Estimate => p.estimate = i.estimate,
        ItemField::ParentKey => p.parent_key = i.parent_key.clone(),
        ItemField::CreateTime => p.create_time = i.create_time,
        ItemField::UpdateTime => p.update_time = i.update_time,
        ItemField::CloseTime => p.close_time = i.close_time,
    }
}
