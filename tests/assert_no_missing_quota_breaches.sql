{#- Every user-hour over quota in the staged events is in user_quota_limit, with that usage. -#}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}

),

users as (

    select * from {{ ref('stg_seeds__user_metadata') }}

),

served as (

    select * from {{ ref('user_quota_limit') }}

),

expected as (

    select
        users.email,
        {{ epoch_to_timestamp('events.hour_epoch') }} as hour_start,
        {{ sum_bigint('events.bytes') }} as usage_bytes,
        max(users.quota_bytes_per_hour) as quota_bytes

    from events
    inner join users
        on events.device_id = users.user_id
    group by 1, 2

),

missing as (

    select expected.*
    from expected
    left join served
        on
            expected.email = served.email
            and expected.hour_start = served.{{ adapter.quote('timestamp') }}
            and expected.usage_bytes = served.usage
    where
        expected.usage_bytes > expected.quota_bytes
        and served.email is null

)

select * from missing
