{#- The batch layer's serving table, as in the original exercise: bytes per hour by antenna,
    by user email and by app. Devices missing from user metadata have no email: they count
    for antennas and apps, not for `mail_bytes_total` (the test `assert_no_unknown_devices`
    reports them). -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_bucket': {'column': '"timestamp"', 'kind': 'timestamp', 'grain': 3600}},
        unique_key=['timestamp', 'id', 'type'],
        partition_by=ingest_partition_by('timestamp'),
        indexes=[{'columns': ['timestamp']}],
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

by_antenna as (

    select
        hour_start,
        antenna_id,
        {{ sum_bigint('bytes_total') }} as bytes_total

    from usage
    group by 1, 2

),

by_email as (

    select
        usage.hour_start,
        users.email,
        {{ sum_bigint('usage.bytes_total') }} as bytes_total

    from usage
    inner join users
        on usage.device_id = users.user_id
    group by 1, 2

),

by_app as (

    select
        hour_start,
        app,
        {{ sum_bigint('bytes_total') }} as bytes_total

    from usage
    group by 1, 2

),

final as (

    {{ long_shape('by_antenna', 'hour_start', 'antenna_id', 'bytes_total', 'antenna_bytes_total') }}

    union all

    {{ long_shape('by_email', 'hour_start', 'email', 'bytes_total', 'mail_bytes_total') }}

    union all

    {{ long_shape('by_app', 'hour_start', 'app', 'bytes_total', 'app_bytes_total') }}

)

select * from final
