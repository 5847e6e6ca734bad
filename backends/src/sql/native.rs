//! The Sandcat native API's profiles, friendships and codes, and the media index.

use super::rows::{FriendDbRow, FriendshipRow, MediaRow, ProfileRow};
use super::*;
use sandcat_core::ports::FriendshipStatus;

#[async_trait]
impl NativeStore for SqlStore {
    async fn put_code(
        &self,
        email: &str,
        code: &str,
        now_ms: i64,
        min_interval_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool> {
        sqlx::query("DELETE FROM verification_codes WHERE issued_ms < $1")
            .bind(now_ms - ttl_ms)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        let r = sqlx::query("INSERT INTO verification_codes (email, code, issued_ms, tries) VALUES ($1, $2, $3, 0) ON CONFLICT (email) DO UPDATE SET code = excluded.code, issued_ms = excluded.issued_ms, tries = 0 WHERE verification_codes.issued_ms <= $4")
            .bind(email)
            .bind(code)
            .bind(now_ms)
            .bind(now_ms - min_interval_ms)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn try_code(
        &self,
        email: &str,
        code: &str,
        now_ms: i64,
        ttl_ms: i64,
        max_tries: i64,
    ) -> Result<CodeCheck> {
        // Counting the try first, in one statement, bounds the tries cluster-wide: two
        // instances judging tries at once each see their own count.
        let row = sqlx::query("UPDATE verification_codes SET tries = tries + 1 WHERE email = $1 RETURNING code, issued_ms, tries")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Ok(CodeCheck::Missing);
        };
        let stored: String = row.try_get("code").map_err(db)?;
        let issued: i64 = row.try_get("issued_ms").map_err(db)?;
        let tries: i64 = row.try_get("tries").map_err(db)?;
        let expired = tries > max_tries || now_ms - issued >= ttl_ms;
        let right = !expired && stored == code;
        if !expired && !right && tries < max_tries {
            return Ok(CodeCheck::Wrong);
        }
        // Used up, by this try or by the last one allowed: gone. Deleting the row this try
        // saw makes acceptance happen once even when the same code is tried twice at once.
        let deleted = sqlx::query(
            "DELETE FROM verification_codes WHERE email = $1 AND issued_ms = $2 RETURNING email",
        )
        .bind(email)
        .bind(issued)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .is_some();
        Ok(match (expired, right) {
            (true, _) => CodeCheck::Expired,
            (false, true) if deleted => CodeCheck::Accepted,
            (false, true) => CodeCheck::Missing,
            (false, false) => CodeCheck::Wrong,
        })
    }

    async fn native_profile(&self, user_id: &str) -> Result<Option<NativeProfile>> {
        let row = sqlx::query("SELECT * FROM native_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(ProfileRow::read).transpose()
    }

    async fn delete_native_profile(&self, user_id: &str) -> Result<()> {
        for sql in [
            "DELETE FROM native_profiles WHERE user_id = $1",
            "DELETE FROM oauth_identities WHERE user_id = $1",
        ] {
            sqlx::query(sql)
                .bind(user_id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn put_native_profile(&self, p: &NativeProfile) -> Result<()> {
        let res = sqlx::query("INSERT INTO native_profiles (user_id, email, phone, gender, age, region, address, birthday, signature, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, phone = excluded.phone, gender = excluded.gender, age = excluded.age, region = excluded.region, address = excluded.address, birthday = excluded.birthday, signature = excluded.signature, update_time = excluded.update_time")
            .bind(&p.user_id)
            .bind(&p.email)
            .bind(&p.phone)
            .bind(&p.gender)
            .bind(p.age as i64)
            .bind(&p.region)
            .bind(&p.address)
            .bind(p.birthday)
            .bind(&p.signature)
            .bind(p.create_time)
            .bind(p.update_time)
            .execute(&self.pool)
            .await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::matrix(
                ErrorCode::UserInUse,
                "that email or phone belongs to another user",
            )),
            other => other.map(|_| ()).map_err(db),
        }
    }

    async fn user_by_contact(&self, contact: &str) -> Result<Option<String>> {
        let native: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM native_profiles WHERE email = $1 OR phone = $2",
        )
        .bind(contact)
        .bind(contact)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if native.is_some() {
            return Ok(native);
        }
        // An address added to the account through the Matrix API (one set of users).
        let threepid: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM user_threepids WHERE medium = 'email' AND address = $1",
        )
        .bind(contact)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(threepid
            .and_then(|u| OwnedUserId::try_from(u).ok())
            .map(|u| u.localpart().to_owned()))
    }

    async fn oauth_user(&self, provider: &str, subject: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT user_id FROM oauth_identities WHERE provider = $1 AND subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn link_oauth(&self, provider: &str, subject: &str, user_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO oauth_identities (provider, subject, user_id) VALUES ($1, $2, $3) \
             ON CONFLICT (provider, subject) DO NOTHING",
        )
        .bind(provider)
        .bind(subject)
        .bind(user_id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_friendship(&self, f: &Friendship) -> Result<()> {
        sqlx::query("INSERT INTO native_friendships (fs_id, user_id, friend_id, status, apply_msg, req_remark, resp_msg, resp_remark, source, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (fs_id) DO UPDATE SET status = excluded.status, apply_msg = excluded.apply_msg, req_remark = excluded.req_remark, resp_msg = excluded.resp_msg, resp_remark = excluded.resp_remark, update_time = excluded.update_time")
            .bind(&f.fs_id)
            .bind(&f.user_id)
            .bind(&f.friend_id)
            .bind(f.status.as_i32() as i64)
            .bind(&f.apply_msg)
            .bind(&f.req_remark)
            .bind(&f.resp_msg)
            .bind(&f.resp_remark)
            .bind(&f.source)
            .bind(f.create_time)
            .bind(f.update_time)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn friendship(&self, fs_id: &str) -> Result<Option<Friendship>> {
        let row = sqlx::query("SELECT * FROM native_friendships WHERE fs_id = $1")
            .bind(fs_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(FriendshipRow::read).transpose()
    }

    async fn friendships_to(
        &self,
        user_id: &str,
        status: FriendshipStatus,
        since: i64,
    ) -> Result<Vec<Friendship>> {
        let rows = sqlx::query("SELECT * FROM native_friendships WHERE friend_id = $1 AND status = $2 AND update_time > $3 ORDER BY create_time")
            .bind(user_id)
            .bind(status.as_i32() as i64)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(FriendshipRow::read).collect()
    }

    async fn put_friend(&self, f: &FriendRow) -> Result<()> {
        sqlx::query("INSERT INTO native_friends (user_id, friend_id, fs_id, status, remark, source, room_id, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (user_id, friend_id) DO UPDATE SET fs_id = excluded.fs_id, status = excluded.status, remark = excluded.remark, source = excluded.source, room_id = excluded.room_id, update_time = excluded.update_time")
            .bind(&f.user_id)
            .bind(&f.friend_id)
            .bind(&f.fs_id)
            .bind(f.status.as_i32() as i64)
            .bind(&f.remark)
            .bind(&f.source)
            .bind(&f.room_id)
            .bind(f.create_time)
            .bind(f.update_time)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn friend(&self, user_id: &str, friend_id: &str) -> Result<Option<FriendRow>> {
        let row = sqlx::query("SELECT * FROM native_friends WHERE user_id = $1 AND friend_id = $2")
            .bind(user_id)
            .bind(friend_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(FriendDbRow::read).transpose()
    }

    async fn friends(&self, user_id: &str, since: i64) -> Result<Vec<FriendRow>> {
        let rows = sqlx::query("SELECT * FROM native_friends WHERE user_id = $1 AND update_time > $2 ORDER BY create_time")
            .bind(user_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(FriendDbRow::read).collect()
    }

    async fn friends_in_room(&self, room_id: &str) -> Result<Vec<FriendRow>> {
        let rows = sqlx::query("SELECT * FROM native_friends WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(FriendDbRow::read).collect()
    }
}

#[async_trait]
impl MediaIndex for SqlStore {
    async fn put_media(&self, m: &MediaRecord) -> Result<()> {
        sqlx::query("INSERT INTO media (media_id, uploader, content_type, filename, size, created_ts, uploaded) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (media_id) DO UPDATE SET content_type = excluded.content_type, filename = excluded.filename, size = excluded.size, uploaded = excluded.uploaded")
            .bind(&m.media_id)
            .bind(&m.uploader)
            .bind(&m.content_type)
            .bind(&m.filename)
            .bind(m.size as i64)
            .bind(m.created_ts as i64)
            .bind(m.uploaded as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn media(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        let row = sqlx::query("SELECT * FROM media WHERE media_id = $1")
            .bind(media_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(MediaRow::read).transpose()
    }
}
