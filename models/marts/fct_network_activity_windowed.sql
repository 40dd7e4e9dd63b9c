{#- The operators' view of the network per window.

    A device is connected from its first event until it has been silent for
    var('silence_gap_minutes'), counted in whole windows: it is connected in window w when
    it sent anything in the windows (w - gap, w]. It connects in w when it is active in w
    and was not connected in the window before, and disconnects in w when it was connected
    in the window before and is not any more. A heavy user is a known user whose usage in
    the hour so far (up to the end of w) exceeds var('heavy_user_fraction') of the quota.
    Windows are those with any traffic. -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_bucket': {'column': 'window_epoch', 'grain': var('window_minutes') * 60, 'after': (var('silence_gap_minutes') + var('window_minutes')) * 60, 'to_hour_end': true}},
        unique_key=['window_epoch'],
        partition_by=ingest_partition_by('window_epoch'),
        indexes=[{'columns': ['window_epoch']}],
    )
}}

{%- set window = var('window_minutes') * 60 -%}
{%- set gap = var('silence_gap_minutes') * 60 -%}
{%- set reach = [gap, 3600] | max -%}
{#- An event in window u changes the rows of the windows from u until the device's silence
    gap after it has passed (connecting, connected, disconnecting) and until the end of u's
    hour (usage so far this hour); each of those reads the windows up to `reach` before it. -#}
{%- set increment = ingest_increment(grain=window, after=gap + window, to_hour_end=true) %}

with

usage as (

    select * from {{ ref('fct_usage_windowed') }}
    where {{ ingest_range_filter(increment, 'window_epoch', before=reach + window) }}

),

users as (

    select * from {{ ref('dim_users') }}

),

activity as (

    select
        window_epoch,
        device_id,
        {{ sum_bigint('bytes_total') }} as bytes_total

    from usage
    group by 1, 2

),

windows as (

    select
        window_epoch,
        {{ sum_bigint('bytes_total') }} as bytes_total

    from usage
    where {{ ingest_range_filter(increment, 'window_epoch') }}
    group by 1

),

sequenced as (

    select
        window_epoch,
        device_id,
        lag(window_epoch) over (partition by device_id order by window_epoch) as previous_active_epoch,
        lead(window_epoch) over (partition by device_id order by window_epoch) as next_active_epoch

    from activity

),

connections as (

    select
        window_epoch,
        count(*) as devices_connecting

    from sequenced
    where
        previous_active_epoch is null
        or previous_active_epoch <= window_epoch - {{ gap }} - {{ window }}
    group by 1

),

disconnections as (

    select
        window_epoch + {{ gap }} as window_epoch,
        count(*) as devices_disconnecting

    from sequenced
    where
        next_active_epoch is null
        or next_active_epoch > window_epoch + {{ gap }}
    group by 1

),

device_state as (

    select
        windows.window_epoch,
        activity.device_id,
        max(case when activity.window_epoch > windows.window_epoch - {{ gap }} then 1 else 0 end) as is_connected,
        {{ sum_bigint(
            'case when activity.window_epoch >= ' ~ bucket_epoch('windows.window_epoch', 3600)
            ~ ' then activity.bytes_total else 0 end'
        ) }} as usage_this_hour

    from windows
    inner join activity
        on
            windows.window_epoch >= activity.window_epoch
            and activity.window_epoch > windows.window_epoch - {{ reach }}
    group by 1, 2

),

connected as (

    select
        device_state.window_epoch,
        count(*) as devices_connected,
        sum(
            case
                when device_state.usage_this_hour > {{ var('heavy_user_fraction') }} * users.quota_bytes_per_hour
                    then 1
                else 0
            end
        ) as heavy_users_connected

    from device_state
    left join users
        on device_state.device_id = users.user_id
    where device_state.is_connected = 1
    group by 1

),

final as (

    select
        {{ epoch_to_timestamp('windows.window_epoch') }} as window_start,
        windows.window_epoch,
        coalesce(connected.devices_connected, 0) as devices_connected,
        coalesce(connections.devices_connecting, 0) as devices_connecting,
        coalesce(disconnections.devices_disconnecting, 0) as devices_disconnecting,
        cast(coalesce(connected.heavy_users_connected, 0) as {{ dbt.type_bigint() }}) as heavy_users_connected,
        cast(coalesce(connected.heavy_users_connected, 0) as {{ type_double() }})
        / nullif(connected.devices_connected, 0) as heavy_user_share,
        windows.bytes_total,
        cast(windows.bytes_total as {{ type_double() }}) / {{ window }} as bytes_per_second

    from windows
    left join connected
        on windows.window_epoch = connected.window_epoch
    left join connections
        on windows.window_epoch = connections.window_epoch
    left join disconnections
        on windows.window_epoch = disconnections.window_epoch

)

select * from final
