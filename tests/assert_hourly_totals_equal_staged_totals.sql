{#- bytes_hourly's antenna, app and email totals equal the de-duplicated staged events, hour
    by hour and type by type: nothing lost, nothing counted twice, no hour or type missing
    between staging and the serving table. Email totals cover the users of user metadata
    only (unknown devices have no email). -#}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

served as (

    select * from {{ ref('bytes_hourly') }}

),

staged_per_hour as (

    select
        {{ epoch_to_timestamp('events.hour_epoch') }} as hour_start,
        {{ sum_bigint('events.bytes') }} as bytes_total,
        {{ sum_bigint('case when users.user_id is not null then events.bytes else 0 end') }}
            as known_user_bytes

    from events
    left join users
        on events.device_id = users.user_id
    group by 1

),

expected as (

    select
        hour_start,
        'antenna_bytes_total' as type,
        bytes_total
    from staged_per_hour

    union all

    select
        hour_start,
        'app_bytes_total' as type,
        bytes_total
    from staged_per_hour

    union all

    select
        hour_start,
        'mail_bytes_total' as type,
        known_user_bytes as bytes_total
    from staged_per_hour
    where known_user_bytes > 0

),

served_per_hour as (

    select
        {{ adapter.quote('timestamp') }} as hour_start,
        type,
        {{ sum_bigint('value') }} as bytes_total

    from served
    group by 1, 2

),

compared as (

    select
        coalesce(expected.hour_start, served_per_hour.hour_start) as hour_start,
        coalesce(expected.type, served_per_hour.type) as type,
        expected.bytes_total as staged_bytes,
        served_per_hour.bytes_total as served_bytes

    from expected
    full outer join served_per_hour
        on
            expected.hour_start = served_per_hour.hour_start
            and expected.type = served_per_hour.type

)

select * from compared
where
    staged_bytes is null
    or served_bytes is null
    or served_bytes != staged_bytes
