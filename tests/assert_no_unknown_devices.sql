{#- Devices missing from user metadata. They still count for antennas and apps; this warns
    so that someone adds them to seeds/user_metadata.csv. -#}
{{ config(severity='warn') }}

with

usage as (

    select * from {{ ref('fct_user_usage_hourly') }}

)

select
    device_id,
    min(hour_start) as first_seen_hour,
    {{ sum_bigint('usage_bytes') }} as usage_bytes

from usage
where not is_known_user
group by 1
