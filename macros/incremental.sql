{#- Incremental runs rebuild every bucket from a cutoff: the newest bucket already built,
    minus var('lookback_minutes'), rounded down to the model's grain. Late events that land
    within the lookback are folded into the buckets they belong to, so an incremental run
    gives what a full refresh gives on the same data. -#}

{#- The cutoff (epoch seconds) of an incremental model whose column `epoch_column` holds
    its buckets' starts. Outside incremental runs: 0 (everything). -#}
{% macro incremental_cutoff(epoch_column, grain_seconds) -%}
    {%- if var('incremental_cutoff_epoch', none) is not none and is_incremental() -%}
        {#- unit tests pin the cutoff instead of reading the model's own table -#}
        {{ var('incremental_cutoff_epoch') }}
    {%- elif is_incremental() -%}
        (
            select {{ bucket_epoch('coalesce(max(' ~ epoch_column ~ '), 0) - ' ~ (var('lookback_minutes') * 60), grain_seconds) }}
            from {{ this }}
        )
    {%- else -%}
        0
    {%- endif -%}
{%- endmacro %}
