{#- user_quota_limit lists exactly the user-hours whose usage among the de-duplicated staged
    events below the high it was built to is strictly over the quota, with that usage and
    quota: none missing, none extra. -#}
{%- set increment = ingest_test_increment('user_quota_limit', 3600) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

users as (

    select * from {{ ref('stg_seeds__user_metadata') }}

),

served_rows as (

    select * from {{ ref('user_quota_limit') }}

),

usage_per_user_hour as (

    select
        events.hour_epoch,
        users.email,
        {{ sum_bigint('events.bytes') }} as usage_bytes,
        max(users.quota_bytes_per_hour) as quota_bytes

    from events
    inner join users
        on events.device_id = users.user_id
    group by 1, 2

),

expected as (

    select
        hour_epoch,
        email,
        usage_bytes,
        quota_bytes

    from usage_per_user_hour
    where usage_bytes > quota_bytes

),

served as (

    select
        {{ epoch_seconds(adapter.quote('timestamp')) }} as hour_epoch,
        email,
        usage as usage_bytes,
        quota as quota_bytes

    from served_rows
    where {{ ingest_range_filter(increment, epoch_seconds(adapter.quote('timestamp'))) }}

),

{{ served_versus_staged(['hour_epoch', 'email'], ['usage_bytes', 'quota_bytes']) }}
