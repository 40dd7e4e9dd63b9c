{#- fct_quota_breaches lists exactly the user-hours whose usage among the de-duplicated staged
    events below the high it was built to is strictly over the user's quota, with that usage:
    none missing (an alert never sent), none extra. -#}
{%- set increment = ingest_test_increment('fct_quota_breaches', 3600) %}

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

breaches as (

    select * from {{ ref('fct_quota_breaches') }}

),

usage_per_user_hour as (

    select
        events.hour_epoch,
        users.user_id,
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
        user_id,
        usage_bytes,
        quota_bytes

    from usage_per_user_hour
    where usage_bytes > quota_bytes

),

served as (

    select
        hour_epoch,
        user_id,
        usage_bytes,
        quota_bytes

    from breaches
    where {{ ingest_range_filter(increment, 'hour_epoch') }}

),

{{ served_versus_staged(['hour_epoch', 'user_id'], ['usage_bytes', 'quota_bytes']) }}
