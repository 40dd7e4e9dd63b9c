{#- The Network, live dashboard's devices connected, connecting and disconnecting and its
    share of heavy users: mart `fct_network_activity_windowed` over the last
    var('recent_minutes') of data. -#}

with

activity as (

    select * from {{ ref('fct_network_activity_windowed') }}
    where {{ within_last_minutes_of_data('window_start', ref('fct_network_activity_windowed'), var('recent_minutes')) }}

),

final as (

    select
        window_start,
        devices_connected,
        devices_connecting,
        devices_disconnecting,
        heavy_users_connected,
        heavy_user_share,
        bytes_per_second

    from activity

)

select * from final
