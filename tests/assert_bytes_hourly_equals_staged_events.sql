{#- bytes_hourly holds, hour by hour, the antenna, user email and app totals of the
    de-duplicated staged events below the high it was built to: no hour, key or byte missing
    or doubled. Email totals cover the users of user metadata only (unknown devices have no
    email). -#}
{%- set increment = ingest_test_increment('bytes_hourly', 3600) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

users as (

    select * from {{ ref('dim_users') }}

),

served_rows as (

    select * from {{ ref('bytes_hourly') }}

),

expected as (

    select
        hour_epoch,
        'antenna_bytes_total' as type,
        antenna_id as id,
        {{ sum_bigint('bytes') }} as value
    from events
    group by 1, 2, 3

    union all

    select
        events.hour_epoch,
        'mail_bytes_total' as type,
        users.email as id,
        {{ sum_bigint('events.bytes') }} as value
    from events
    inner join users
        on events.device_id = users.user_id
    group by 1, 2, 3

    union all

    select
        hour_epoch,
        'app_bytes_total' as type,
        app as id,
        {{ sum_bigint('bytes') }} as value
    from events
    group by 1, 2, 3

),

served as (

    select
        {{ epoch_seconds(adapter.quote('timestamp')) }} as hour_epoch,
        type,
        id,
        value
    from served_rows
    where {{ ingest_range_filter(increment, epoch_seconds(adapter.quote('timestamp'))) }}

),

{{ served_versus_staged(['hour_epoch', 'type', 'id'], ['value']) }}
