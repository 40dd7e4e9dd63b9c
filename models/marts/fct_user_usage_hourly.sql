{#- Usage of every device per hour, with the user's name, email and quota when the device
    is a known user (unknown devices keep null user columns). -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_bucket': {'column': 'hour_epoch', 'grain': 3600}},
        unique_key=['hour_epoch', 'device_id'],
        partition_by=ingest_partition_by('hour_epoch'),
        indexes=[{'columns': ['hour_epoch']}],
    )
}}

{%- set increment = ingest_increment(grain=3600) %}

with

usage as (

    select * from {{ ref('fct_usage_hourly') }}
    where {{ ingest_range_filter(increment, 'hour_epoch') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

per_device as (

    select
        hour_epoch,
        hour_start,
        device_id,
        {{ sum_bigint('bytes_total') }} as usage_bytes,
        {{ sum_bigint('event_count') }} as event_count

    from usage
    group by 1, 2, 3

),

final as (

    select
        per_device.hour_start,
        per_device.hour_epoch,
        per_device.device_id,
        users.user_name,
        users.email,
        per_device.usage_bytes,
        per_device.event_count,
        users.quota_bytes_per_hour as quota_bytes,
        users.user_id is not null as is_known_user,
        coalesce(per_device.usage_bytes > users.quota_bytes_per_hour, false) as is_over_quota

    from per_device
    left join users
        on per_device.device_id = users.user_id

)

select * from final
