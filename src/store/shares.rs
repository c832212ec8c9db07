//! Shares, and the reads of an account's access data: whole (a replica loading the account into
//! memory, one query per table in one snapshot) or around one check (an explanation).

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sea_orm::{
    AccessMode,
    ActiveValue::Set,
    ColumnTrait, DbBackend, EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
    sea_query::{Condition, Expr, ExprTrait, Query},
};
use uuid::Uuid;

use super::entities::membership::{StoredRole, StoredStatus};
use super::entities::{account, group_member, membership, session, share};
use super::pagination::keyset_after;
use super::{Store, Tx};
use crate::domain::error::{DomainError, DomainResult};
use crate::domain::page::After;
use crate::domain::roles::{Level, Role};
use crate::domain::sharing::{ResourceRef, ResourceType, Share, Subject};
use crate::domain::users::MembershipStatus;

fn corrupt(what: &str) -> DomainError {
    DomainError::internal(anyhow::anyhow!("a stored share has an unknown {what}"))
}

fn kind_of(value: i16) -> DomainResult<ResourceType> {
    ResourceType::from_code(value).ok_or_else(|| corrupt("resource type"))
}

fn subject_of(kind: &str, id: Uuid) -> DomainResult<Subject> {
    Subject::from_parts(kind, id).ok_or_else(|| corrupt("subject type"))
}

fn level_of(value: &str) -> DomainResult<Level> {
    Level::parse(value)
        .filter(|level| *level != Level::None)
        .ok_or_else(|| corrupt("level"))
}

impl TryFrom<share::Model> for Share {
    type Error = DomainError;

    fn try_from(row: share::Model) -> DomainResult<Self> {
        Ok(Share {
            id: row.id,
            account_id: row.account_id,
            resource: ResourceRef {
                kind: kind_of(row.resource_type)?,
                id: row.resource_id,
            },
            subject: subject_of(&row.subject_type, row.subject_id)?,
            level: level_of(&row.level)?,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn shares(rows: Vec<share::Model>) -> DomainResult<Vec<Share>> {
    rows.into_iter().map(Share::try_from).collect()
}

fn on_resource(resource: &ResourceRef) -> Condition {
    Condition::all()
        .add(share::Column::ResourceType.eq(resource.kind.code()))
        .add(share::Column::ResourceId.eq(resource.id.as_str()))
}

/// Shares to the user or to one of the user's groups.
fn reaching(account_id: Uuid, user_id: Uuid) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(share::Column::SubjectType.eq("user"))
                .add(share::Column::SubjectId.eq(user_id)),
        )
        .add(
            Condition::all()
                .add(share::Column::SubjectType.eq("group"))
                .add(
                    share::Column::SubjectId.in_subquery(
                        Query::select()
                            .column(group_member::Column::GroupId)
                            .from(group_member::Entity)
                            .and_where(group_member::Column::AccountId.eq(account_id))
                            .and_where(group_member::Column::UserId.eq(user_id))
                            .to_owned(),
                    ),
                ),
        )
}

/// A page of "shared with a user": where it starts, after a (type, id).
pub fn resource_position(resource: &ResourceRef) -> After {
    After {
        key: format!("{}:{}", resource.kind.as_str(), resource.id),
        id: Uuid::nil(),
    }
}

fn after_resource(after: &After) -> Option<(ResourceType, &str)> {
    let (kind, id) = after.key.split_once(':')?;
    Some((ResourceType::parse(kind)?, id))
}

/// What an explanation reads, from one snapshot.
#[derive(Debug, Clone)]
pub struct ExplainRows {
    pub revision: i64,
    pub member: Option<(Role, MembershipStatus)>,
    pub groups: Vec<Uuid>,
    /// The shares on the named resources that reach the user.
    pub shares: Vec<Share>,
}

/// Callbacks that receive an account's access data, table by table.
pub struct AccessSink<'a> {
    pub member: &'a mut (dyn FnMut(Uuid, Role, MembershipStatus) + Send),
    pub group_member: &'a mut (dyn FnMut(Uuid, Uuid) + Send),
    pub share: &'a mut (dyn FnMut(ResourceType, &str, Subject, Level) + Send),
    /// Sessions of the account that ended after `ended_since`, with when.
    pub session_ended: &'a mut (dyn FnMut(Uuid, DateTime<Utc>) + Send),
    pub ended_since: DateTime<Utc>,
}

/// The account's sessions that ended after `since`, with when.
async fn sessions_ended_since(
    conn: &impl sea_orm::ConnectionTrait,
    account_id: Uuid,
    since: DateTime<Utc>,
) -> DomainResult<Vec<(Uuid, DateTime<Utc>)>> {
    Ok(session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .column(session::Column::RevokedAt)
        .filter(session::Column::AccountId.eq(account_id))
        .filter(session::Column::RevokedAt.gt(since))
        .into_tuple::<(Uuid, Option<DateTime<Utc>>)>()
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|(id, at)| Some((id, at?)))
        .collect())
}

async fn find_share(
    conn: &impl sea_orm::ConnectionTrait,
    account_id: Uuid,
    id: Uuid,
) -> DomainResult<Option<Share>> {
    share::Entity::find_by_id((account_id, id))
        .one(conn)
        .await?
        .map(Share::try_from)
        .transpose()
}

/// The account's access revision, `None` when the account does not exist.
async fn access_revision(
    conn: &impl sea_orm::ConnectionTrait,
    account_id: Uuid,
) -> DomainResult<Option<i64>> {
    Ok(account::Entity::find_by_id(account_id)
        .select_only()
        .column(account::Column::AccessRevision)
        .into_tuple::<i64>()
        .one(conn)
        .await?)
}

impl Store {
    pub async fn share(&self, account_id: Uuid, id: Uuid) -> DomainResult<Option<Share>> {
        find_share(&self.db, account_id, id).await
    }

    /// Up to `limit` shares placed on the resource, oldest first, after `after` (created
    /// time, id).
    pub async fn resource_shares(
        &self,
        account_id: Uuid,
        resource: &ResourceRef,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<Share>> {
        let mut query = share::Entity::find()
            .filter(share::Column::AccountId.eq(account_id))
            .filter(on_resource(resource));
        if let Some(after) = after {
            let at = DateTime::parse_from_rfc3339(&after.key)
                .map_err(DomainError::internal)?
                .with_timezone(&Utc);
            query = query.filter(keyset_after(
                share::Column::CreatedAt,
                share::Column::Id,
                at,
                after.id,
                false,
            ));
        }
        shares(
            query
                .order_by_asc(share::Column::CreatedAt)
                .order_by_asc(share::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?,
        )
    }

    /// Up to `limit` resources shared with the user directly or through a group, in (type,
    /// id) order after `after`, each with the shares that reach the user.
    pub async fn shared_with(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        kind: Option<ResourceType>,
        after: Option<&After>,
        limit: u64,
    ) -> DomainResult<Vec<(ResourceRef, Vec<Share>)>> {
        let mut filter = Condition::all()
            .add(share::Column::AccountId.eq(account_id))
            .add(reaching(account_id, user_id));
        if let Some(kind) = kind {
            filter = filter.add(share::Column::ResourceType.eq(kind.code()));
        }
        if let Some(after) = after {
            let (kind, id) = after_resource(after).ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!("a page position is not a resource"))
            })?;
            filter = filter.add(
                Expr::tuple([
                    Expr::col(share::Column::ResourceType),
                    Expr::col(share::Column::ResourceId),
                ])
                .gt(Expr::tuple([
                    Expr::value(kind.code()),
                    Expr::value(id.to_owned()),
                ])),
            );
        }
        let page: Vec<(i16, String)> = share::Entity::find()
            .select_only()
            .column(share::Column::ResourceType)
            .column(share::Column::ResourceId)
            .distinct()
            .filter(filter.clone())
            .order_by_asc(share::Column::ResourceType)
            .order_by_asc(share::Column::ResourceId)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(Vec::new());
        };
        let bound =
            |(kind, id): &(i16, String)| Expr::tuple([Expr::value(*kind), Expr::value(id.clone())]);
        let columns = || {
            Expr::tuple([
                Expr::col(share::Column::ResourceType),
                Expr::col(share::Column::ResourceId),
            ])
        };
        let rows = shares(
            share::Entity::find()
                .filter(filter)
                .filter(columns().gte(bound(first)))
                .filter(columns().lte(bound(last)))
                .order_by_asc(share::Column::ResourceType)
                .order_by_asc(share::Column::ResourceId)
                .order_by_asc(share::Column::CreatedAt)
                .all(&self.db)
                .await?,
        )?;
        let mut out: Vec<(ResourceRef, Vec<Share>)> = Vec::new();
        for row in rows {
            match out.last_mut() {
                Some((resource, list)) if *resource == row.resource => list.push(row),
                _ => out.push((row.resource.clone(), vec![row])),
            }
        }
        Ok(out)
    }

    /// Runs `read` in a read-only transaction that sees one snapshot of the database.
    async fn snapshot(&self) -> DomainResult<sea_orm::DatabaseTransaction> {
        Ok(match self.backend() {
            DbBackend::Postgres => {
                self.db
                    .begin_with_config(
                        Some(IsolationLevel::RepeatableRead),
                        Some(AccessMode::ReadOnly),
                    )
                    .await?
            }
            // One connection, one writer: a transaction is a snapshot already.
            _ => self.db.begin().await?,
        })
    }

    /// Reads the account's access data into `sink` from one snapshot, one query per table
    /// (shares streamed, not collected); returns the access revision of that snapshot, or
    /// `None` when the account does not exist.
    pub async fn load_access(
        &self,
        account_id: Uuid,
        sink: AccessSink<'_>,
    ) -> DomainResult<Option<i64>> {
        let txn = self.snapshot().await?;
        let Some(revision) = access_revision(&txn, account_id).await? else {
            return Ok(None);
        };
        let members: Vec<(Uuid, StoredRole, StoredStatus)> = membership::Entity::find()
            .select_only()
            .column(membership::Column::UserId)
            .column(membership::Column::Role)
            .column(membership::Column::Status)
            .filter(membership::Column::AccountId.eq(account_id))
            .into_tuple()
            .all(&txn)
            .await?;
        for (user_id, role, status) in members {
            (sink.member)(user_id, role.into(), status.into());
        }
        let pairs: Vec<(Uuid, Uuid)> = group_member::Entity::find()
            .select_only()
            .column(group_member::Column::GroupId)
            .column(group_member::Column::UserId)
            .filter(group_member::Column::AccountId.eq(account_id))
            .into_tuple()
            .all(&txn)
            .await?;
        for (group_id, user_id) in pairs {
            (sink.group_member)(group_id, user_id);
        }
        {
            let mut rows = share::Entity::find()
                .select_only()
                .column(share::Column::ResourceType)
                .column(share::Column::ResourceId)
                .column(share::Column::SubjectType)
                .column(share::Column::SubjectId)
                .column(share::Column::Level)
                .filter(share::Column::AccountId.eq(account_id))
                .into_tuple::<(i16, String, String, Uuid, String)>()
                .stream(&txn)
                .await?;
            while let Some((kind, id, subject_kind, subject_id, level)) = rows.try_next().await? {
                (sink.share)(
                    kind_of(kind)?,
                    &id,
                    subject_of(&subject_kind, subject_id)?,
                    level_of(&level)?,
                );
            }
        }
        for (session_id, at) in sessions_ended_since(&txn, account_id, sink.ended_since).await? {
            (sink.session_ended)(session_id, at);
        }
        txn.commit().await?;
        Ok(Some(revision))
    }

    /// The account's sessions that ended after `since`, with when.
    pub async fn sessions_ended_since(
        &self,
        account_id: Uuid,
        since: DateTime<Utc>,
    ) -> DomainResult<Vec<(Uuid, DateTime<Utc>)>> {
        sessions_ended_since(&self.db, account_id, since).await
    }

    /// What explaining the user's level on `resources` reads, from one snapshot; `None` when
    /// the account does not exist.
    pub async fn explain_rows(
        &self,
        account_id: Uuid,
        user_id: Uuid,
        resources: &[ResourceRef],
    ) -> DomainResult<Option<ExplainRows>> {
        let txn = self.snapshot().await?;
        let Some(revision) = access_revision(&txn, account_id).await? else {
            return Ok(None);
        };
        let member: Option<(StoredRole, StoredStatus)> =
            membership::Entity::find_by_id((account_id, user_id))
                .select_only()
                .column(membership::Column::Role)
                .column(membership::Column::Status)
                .into_tuple()
                .one(&txn)
                .await?;
        let groups: Vec<Uuid> = group_member::Entity::find()
            .select_only()
            .column(group_member::Column::GroupId)
            .filter(group_member::Column::AccountId.eq(account_id))
            .filter(group_member::Column::UserId.eq(user_id))
            .into_tuple()
            .all(&txn)
            .await?;
        let mut on_any = Condition::any();
        for resource in resources {
            on_any = on_any.add(on_resource(resource));
        }
        let rows = share::Entity::find()
            .filter(share::Column::AccountId.eq(account_id))
            .filter(reaching(account_id, user_id))
            .filter(on_any)
            .order_by_asc(share::Column::CreatedAt)
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(ExplainRows {
            revision,
            member: member.map(|(role, status)| (role.into(), status.into())),
            groups,
            shares: shares(rows)?,
        }))
    }
}

impl Tx {
    pub async fn share(&self, account_id: Uuid, id: Uuid) -> DomainResult<Option<Share>> {
        find_share(self.conn(), account_id, id).await
    }

    /// The share of `subject` on `resource`, if there is one.
    pub async fn share_of(
        &self,
        account_id: Uuid,
        resource: &ResourceRef,
        subject: Subject,
    ) -> DomainResult<Option<Share>> {
        let (kind, subject_id) = subject.parts();
        share::Entity::find()
            .filter(share::Column::AccountId.eq(account_id))
            .filter(on_resource(resource))
            .filter(share::Column::SubjectType.eq(kind))
            .filter(share::Column::SubjectId.eq(subject_id))
            .one(self.conn())
            .await?
            .map(Share::try_from)
            .transpose()
    }

    pub async fn insert_share(&self, share: &Share) -> DomainResult<()> {
        let (kind, subject_id) = share.subject.parts();
        share::Entity::insert(share::ActiveModel {
            account_id: Set(share.account_id),
            id: Set(share.id),
            resource_type: Set(share.resource.kind.code()),
            resource_id: Set(share.resource.id.clone()),
            subject_type: Set(kind.to_owned()),
            subject_id: Set(subject_id),
            level: Set(share.level.as_str().to_owned()),
            created_by: Set(share.created_by.clone()),
            created_at: Set(share.created_at),
            updated_at: Set(share.updated_at),
        })
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    /// Replaces the share's level and who last changed it.
    pub async fn update_share(
        &self,
        account_id: Uuid,
        id: Uuid,
        level: Level,
        by: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<()> {
        share::Entity::update_many()
            .col_expr(share::Column::Level, Expr::value(level.as_str()))
            .col_expr(share::Column::CreatedBy, Expr::value(by))
            .col_expr(share::Column::UpdatedAt, Expr::value(now))
            .filter(share::Column::AccountId.eq(account_id))
            .filter(share::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    pub async fn delete_share(&self, account_id: Uuid, id: Uuid) -> DomainResult<()> {
        share::Entity::delete_many()
            .filter(share::Column::AccountId.eq(account_id))
            .filter(share::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Deletes every share to `subject` (a removed user, a deleted group).
    pub async fn delete_shares_to(&self, account_id: Uuid, subject: Subject) -> DomainResult<u64> {
        let (kind, subject_id) = subject.parts();
        Ok(share::Entity::delete_many()
            .filter(share::Column::AccountId.eq(account_id))
            .filter(share::Column::SubjectType.eq(kind))
            .filter(share::Column::SubjectId.eq(subject_id))
            .exec(self.conn())
            .await?
            .rows_affected)
    }
}
