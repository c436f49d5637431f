using System.Text.Json.Nodes;

namespace MoECompress.Compression.Surgery;

/// <summary>
/// The <c>expert_map</c> manifest property: per routed layer, each new expert with its members (new → old) and each
/// original expert with the new experts it went into (old → new; empty when dropped).
/// </summary>
internal static class ExpertMapManifest
{
    public static JsonObject Build(ExpertSurgeryPlan plan, int inputExperts)
    {
        var layers = new JsonObject();
        foreach (var (layer, list) in plan.Layers.OrderBy(p => p.Key))
        {
            var newToOld = new JsonArray();
            var oldToNew = new List<int>[inputExperts];
            for (int e = 0; e < inputExperts; e++) oldToNew[e] = [];
            for (int k = 0; k < list.Count; k++)
            {
                var o = list[k];
                double sum = o.MemberWeights.Sum();
                newToOld.Add(new JsonObject
                {
                    ["new"] = k,
                    ["representative"] = o.Representative,
                    ["members"] = new JsonArray(o.Members.Select(m => (JsonNode)m).ToArray()),
                    ["weights"] = new JsonArray(o.MemberWeights.Select(w => (JsonNode)(sum > 0 ? w / sum : w)).ToArray()),
                    ["merged"] = o.Merged,
                    ["router_row"] = o.RouterRow == RouterRowRule.Weighted ? "weighted" : "representative",
                });
                foreach (var m in o.Members) oldToNew[m].Add(k);
            }
            var old = new JsonObject();
            for (int e = 0; e < inputExperts; e++)
                old[e.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonArray(oldToNew[e].Select(k => (JsonNode)k).ToArray());
            layers[layer.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["new_to_old"] = newToOld,
                ["old_to_new"] = old,
            };
        }
        return new JsonObject
        {
            ["input_experts"] = inputExperts,
            ["output_experts"] = plan.OutputExperts,
            ["layers"] = layers,
        };
    }
}
