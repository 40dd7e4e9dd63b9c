{#- The rows of `model` are unique over `combination_of_columns` (dbt-utils' test of the
    same name, which cannot be installed here). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

counted as (

    select
        {{ combination_of_columns | join(', ') }},
        count(*) as copies

    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}

)

select * from counted
where copies > 1

{% endtest %}
